package httpapi

import (
	_ "embed"
	"encoding/json"
	"net/http"
)

// openAPI is the OpenAPI 3 document of both listeners. Its test checks it
// against the routers: every route documented, every documented route real.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document of the listeners with callbacks: each
// callback path item (one with x-giftd-callback) is moved to the path of the
// callback it names, and those of platforms that are off are left out.
func OpenAPI(callbacks []Callback) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return nil, err
	}
	paths := doc["paths"].(map[string]any)
	moved := map[string]any{}
	for path, item := range paths {
		id, ok := item.(map[string]any)["x-giftd-callback"].(string)
		if !ok {
			continue
		}
		delete(paths, path)
		for _, c := range callbacks {
			if c.Doc == id {
				moved[c.Path] = item
			}
		}
	}
	for path, item := range moved {
		paths[path] = item
	}
	return json.MarshalIndent(doc, "", "  ")
}

// handleOpenAPI serves the OpenAPI document of callbacks.
func handleOpenAPI(callbacks []Callback) http.HandlerFunc {
	doc, err := OpenAPI(callbacks)
	return func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			writeError(w, http.StatusInternalServerError, "internal", "openapi document: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc) //nolint:errcheck // the client is gone
	}
}
