package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

// recoverer turns a panic in a handler into a logged 500.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil && v != http.ErrAbortHandler {
					log.Error("panic serving request", "route", chi.RouteContext(r.Context()).RoutePattern(), "panic", v)
					writeError(w, http.StatusInternalServerError, "internal", "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// requireToken lets a request through only with "Authorization: Bearer
// <token>", the scheme in any case (RFC 7235), the token exactly. Both sides
// are hashed first so the comparison takes the same time whatever the
// length of the guess.
func requireToken(token string) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, given, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			ok := strings.EqualFold(scheme, "Bearer")
			got := sha256.Sum256([]byte(strings.TrimLeft(given, " ")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="giftd-admin"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// notFound answers a request for no route with spec §6's error body.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "not_found", "no such route")
}

// methodNotAllowed answers a route asked with a method it has not, with
// spec §6's error body and the Allow header naming the methods of routes,
// the router it is set on.
func methodNotAllowed(routes chi.Routes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		path := chi.RouteContext(r.Context()).RoutePath // set inside a sub-router
		if path == "" {
			path = r.URL.RawPath
		}
		if path == "" {
			path = r.URL.Path
		}
		for _, m := range standardMethods {
			if routes.Match(chi.NewRouteContext(), m, path) {
				w.Header().Add("Allow", m)
			}
		}
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "this route does not take that method; see the Allow header")
	}
}

// limitBody caps request bodies at n bytes.
func limitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}
