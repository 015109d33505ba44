package linkv

import (
	"bytes"
	"encoding/json"
	"testing"
)

// encodedByJSON is a's body as encoding/json's Encoder writes the answer's
// documented shape (docs/linkv.md §3): the reference for appendJSON.
func encodedByJSON(t *testing.T, a answer) string {
	t.Helper()
	type goldOnly struct {
		Gold int64 `json:"gold"`
	}
	v := struct {
		Status int       `json:"status"`
		Msg    string    `json:"msg"`
		Gold   *int64    `json:"gold,omitempty"`
		Data   *goldOnly `json:"data,omitempty"`
	}{Status: a.Status, Msg: a.Msg}
	if a.HasGold {
		v.Gold = &a.Gold
		if a.Debited {
			v.Data = &goldOnly{a.Gold}
		}
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestAnswer_WrittenAsEncodingJSONWrites: every answer's bytes are those
// encoding/json wrote before the answer was written by hand, messages with
// quotes, HTML, control characters, non-ASCII and invalid UTF-8 included.
func TestAnswer_WrittenAsEncodingJSONWrites(t *testing.T) {
	msgs := []string{"", "sign err", "insufficient gold", "system error", "request_id reused with different parameters",
		"gold: must be digits only", `gift_id: "10620" is not in the catalogue`, `gold: want 15 (gift "10620" at 5 × send_num 3), got 14`,
		"refused by policy cap_24h: over the limit of 5000 gold per 24 hours; resets at 2026-12-01T11:00:00Z",
		"a<b>&c", "a<b", "p>q", "x&y", `"quoted"`, `back\slash`, "tab\there", "nul\x00", "del\x7f", "bad\xffutf8", "line\u2028sep", "鲜花",
	}
	for _, msg := range msgs {
		for _, a := range []answer{
			{Status: 200, Msg: msg, Gold: 115, HasGold: true, Debited: true},
			{Status: 402, Msg: msg, Gold: 3, HasGold: true},
			{Status: 403, Msg: msg, Gold: 0, HasGold: true},
			{Status: 400, Msg: msg},
			{Status: 500, Msg: msg, Gold: -1},
			{Status: 200, Msg: msg, Gold: 1_000_000_000_000, HasGold: true, Debited: true},
		} {
			if got, want := string(a.appendJSON(nil)), encodedByJSON(t, a); got != want {
				t.Errorf("answer %+v:\n got %s\nwant %s", a, got, want)
			}
		}
	}
}
