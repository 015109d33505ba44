package httpapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/callback"
	"giftd/internal/httpapi"
	"giftd/internal/linkv"
	"giftd/internal/polyv"
)

// routesOf lists "METHOD /pattern" for every route of a chi router.
func routesOf(t *testing.T, h http.Handler) []string {
	t.Helper()
	var routes []string
	err := chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, method+" "+strings.ReplaceAll(route, "/*/", "/"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(routes)
	return routes
}

// TestOpenAPI_DocumentsExactlyTheRealRoutes walks the real routers of both
// listeners: every route is documented (on the listener it is on), and
// every documented operation is a route.
func TestOpenAPI_DocumentsExactlyTheRealRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	calls := callback.NewRecorder(reg, log)
	pv := polyv.NewHandlers(nil, polyv.Config{Apps: map[string][]string{"pv": {"s"}}}, calls)
	// Every platform on, each at a path of its own choosing, as settings allow.
	callbacks := []httpapi.Callback{
		{Doc: "linkv-debit", Method: http.MethodPost, Path: "/cb/linkv",
			Handler: linkv.NewHandler(nil, linkv.Config{Apps: map[string][]string{"app": {"s"}}}, linkv.NewMetrics(reg), calls)},
		{Doc: "polyv-query", Method: http.MethodGet, Path: "/cb/polyv/points", Handler: pv.Query},
		{Doc: "polyv-donate", Method: http.MethodPost, Path: "/cb/polyv/donate", Handler: pv.Donate},
	}
	deps := httpapi.Deps{
		Callbacks:  callbacks,
		AdminToken: "token-0123456789abcdef",
		Metrics:    httpapi.NewMetrics(reg),
		Gatherer:   reg,
		Log:        log,
	}
	real := map[string][]string{
		"public": routesOf(t, httpapi.NewPublic(deps)),
		"admin":  routesOf(t, httpapi.NewAdmin(deps)),
	}

	raw, err := httpapi.OpenAPI(callbacks)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Title string `json:"title"`
		} `json:"info"`
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Info.Title == "" {
		t.Errorf("openapi %q, title %q: want an OpenAPI 3 document", doc.OpenAPI, doc.Info.Title)
	}
	documented := map[string][]string{}
	for path, item := range doc.Paths {
		var listeners []string
		if err := json.Unmarshal(item["x-giftd-listeners"], &listeners); err != nil || len(listeners) == 0 {
			t.Errorf("%s: no x-giftd-listeners naming its listeners", path)
		}
		for key, op := range item {
			method := strings.ToUpper(key)
			if !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}, method) {
				continue
			}
			var o struct {
				OperationID string                     `json:"operationId"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil || o.OperationID == "" || len(o.Responses) == 0 {
				t.Errorf("%s %s: needs an operationId and responses (%v)", method, path, err)
			}
			for _, l := range listeners {
				documented[l] = append(documented[l], method+" "+path)
			}
		}
	}
	for listener, routes := range real {
		for _, r := range routes {
			if !slices.Contains(documented[listener], r) {
				t.Errorf("%s listener: route %s is not in openapi.json", listener, r)
			}
		}
		for _, d := range documented[listener] {
			if !slices.Contains(routes, d) {
				t.Errorf("%s listener: openapi.json documents %s, which is not a route", listener, d)
			}
		}
	}
	if len(real["admin"]) < 8 || len(real["public"]) < 5 {
		t.Errorf("walked too few routes: %v", real)
	}
}
