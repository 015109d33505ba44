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

// defaultDebitPath is the callback's path in the embedded document.
const defaultDebitPath = "/linkv/debit"

// OpenAPI returns the OpenAPI document with the callback at debitPath.
func OpenAPI(debitPath string) ([]byte, error) {
	if debitPath == "" || debitPath == defaultDebitPath {
		return openAPI, nil
	}
	var doc map[string]any
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return nil, err
	}
	paths := doc["paths"].(map[string]any)
	paths[debitPath] = paths[defaultDebitPath]
	delete(paths, defaultDebitPath)
	return json.MarshalIndent(doc, "", "  ")
}

// handleOpenAPI serves the OpenAPI document, with the configured debit path.
func handleOpenAPI(debitPath string) http.HandlerFunc {
	doc, err := OpenAPI(debitPath)
	return func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			writeError(w, http.StatusInternalServerError, "internal", "openapi document: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc) //nolint:errcheck // the client is gone
	}
}
