// Package console is giftd's operator console: a handful of hand-written
// HTML, CSS and JavaScript files embedded in the binary and served on the
// admin listener under /console/. The pages call the admin API with the
// operator's bearer token, like curl would; the console has no route of its
// own to the database.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/go-chi/chi/v5"
)

//go:embed static
var static embed.FS

// SecurityHeaders are set on every answer of the console. The page runs
// only scripts and styles it loaded from giftd itself (no inline script,
// no eval), talks to giftd only, cannot be framed (clickjacking), sends no
// Referer, and submits no form natively (so a token typed into the sign-in
// form can never end up in a URL, even if the script failed to load).
var SecurityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"X-Content-Type-Options":       "nosniff",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Permissions-Policy":           "camera=(), microphone=(), geolocation=(), payment=()",
	"Cache-Control":                "no-cache",
}

type file struct {
	body        []byte
	etag        string
	contentType string
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Handler returns the console: GET / is the page, GET /{file} its scripts
// and style. Mount it at /console.
func Handler() http.Handler {
	files := map[string]file{}
	entries, err := fs.ReadDir(static, "static")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	for _, e := range entries {
		body, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		files[e.Name()] = file{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`,
			contentType: contentTypes[path.Ext(e.Name())]}
	}
	serve := func(w http.ResponseWriter, r *http.Request, name string) {
		f, ok := files[name]
		if !ok || f.contentType == "" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", f.contentType)
		w.Header().Set("ETag", f.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	}
	r := chi.NewRouter()
	r.Use(secure)
	r.Get("/", func(w http.ResponseWriter, r *http.Request) { serve(w, r, "index.html") })
	r.Get("/{file}", func(w http.ResponseWriter, r *http.Request) { serve(w, r, chi.URLParam(r, "file")) })
	return r
}

func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range SecurityHeaders {
			w.Header().Set(k, v)
		}
		next.ServeHTTP(w, r)
	})
}
