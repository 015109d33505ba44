package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"giftd/internal/console"
)

func get(t *testing.T, h http.Handler, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

func TestConsole_ServesFilesWithSecurityHeaders(t *testing.T) {
	h := console.Handler()
	for path, ctype := range map[string]string{
		"/":            "text/html; charset=utf-8",
		"/app.js":      "text/javascript; charset=utf-8",
		"/console.css": "text/css; charset=utf-8",
		"/nope.js":     "text/plain; charset=utf-8",
		"/../go.mod":   "text/plain; charset=utf-8",
	} {
		resp := get(t, h, path)
		if got := resp.Header.Get("Content-Type"); got != ctype {
			t.Errorf("%s: Content-Type %q, want %q", path, got, ctype)
		}
		for k, v := range console.SecurityHeaders {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", path, k, got, v)
			}
		}
	}
	csp := console.SecurityHeaders["Content-Security-Policy"]
	for _, want := range []string{"frame-ancestors 'none'", "script-src 'self'", "form-action 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q allows something unsafe", csp)
	}
	if resp := get(t, h, "/nope.js"); resp.StatusCode != 404 {
		t.Errorf("unknown file: %d", resp.StatusCode)
	}
	resp := get(t, h, "/app.js")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || etag == "" {
		t.Fatalf("app.js: %d, ETag %q", resp.StatusCode, etag)
	}
	if resp := get(t, h, "/app.js", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("app.js with its ETag: %d, want 304", resp.StatusCode)
	}
}

// TestConsole_NoInlineScriptOrStyle: the page must work under its CSP, which
// refuses inline scripts, event-handler attributes and inline styles.
func TestConsole_NoInlineScriptOrStyle(t *testing.T) {
	body, _ := io.ReadAll(get(t, console.Handler(), "/").Body)
	page := string(body)
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s+[^>]*)?>[^<]+</script>`), // a script with a body
		regexp.MustCompile(`\son[a-z]+\s*=`),                      // onclick= and the like
		regexp.MustCompile(`\sstyle\s*=`),
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`javascript:`),
		regexp.MustCompile(`<form[^>]*\s(action|method)=`),
	} {
		if m := bad.FindString(page); m != "" {
			t.Errorf("index.html has %q", m)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, ` src="/console/`) {
			t.Errorf("index.html has %q: every script must be a file of the console", tag)
		}
	}
	if !strings.Contains(page, `<script type="module" src="/console/app.js">`) {
		t.Error("index.html does not load /console/app.js")
	}
	// The token field has no name: even a native submission would not carry it.
	if m := regexp.MustCompile(`<input id="token"[^>]*>`).FindString(page); m == "" || strings.Contains(m, "name=") {
		t.Errorf("token input %q: want one without a name", m)
	}
}
