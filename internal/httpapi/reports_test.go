package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"giftd/internal/ledger"
)

// giveGift debits a settled gift through the store, as a callback would.
func giveGift(t *testing.T, e *env, req, sender, receiver, room, giftID string, gold int64) {
	t.Helper()
	if _, err := e.store.TopUp(context.Background(), ledger.TopUp{UserID: sender, Amount: gold, Key: "seed-" + req}); err != nil {
		t.Fatal(err)
	}
	res, err := e.store.Debit(context.Background(), ledger.Debit{
		Key: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: req}, UserID: sender, Gold: gold,
		Fingerprint: sha256.Sum256([]byte(req)), ExpiresAt: time.Now().Add(time.Hour),
		Gift: ledger.Gift{ReceiverID: receiver, RoomID: room, GiftID: giftID, Count: 1},
	})
	if err != nil || res.Status != ledger.Debited {
		t.Fatalf("gift %s: %+v, %v", req, res, err)
	}
}

// getCSV asks for path with Accept: text/csv (or ?format=csv already in
// path) and returns the records.
func getCSV(t *testing.T, e *env, path string) (http.Header, [][]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.admin.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/csv, application/json;q=0.5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
	}
	recs, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		t.Fatalf("%s: not CSV: %v\n%s", path, err, body)
	}
	return resp.Header, recs
}

func TestReports_CSVHasAHeaderAndNeutralisesFormulas(t *testing.T) {
	for _, mode := range []string{"one server", "partitioned"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "partitioned" {
				e, _ := newPartitionedEnv(t, 0)
				testReportsCSV(t, e)
				return
			}
			testReportsCSV(t, newEnv(t))
		})
	}
}

func testReportsCSV(t *testing.T, e *env) {
	// User ids may start with = + -; receivers, rooms and gifts with anything.
	giveGift(t, e, "g1", "=evil", "-host", "+room", "@SUM(A1)", 10)
	giveGift(t, e, "g2", "fan", "-host", "+room", "rose", 5)

	for _, tc := range []struct {
		path string
		want [][]string
	}{
		{"/admin/v1/reports/gifts?group=sender", [][]string{
			{"sender_id", "gifts", "items", "gold", "earnings", "house"}, {"'=evil", "1", "1", "10", "0", "10"}, {"fan", "1", "1", "5", "0", "5"}}},
		{"/admin/v1/reports/gifts?group=gift&format=csv", [][]string{
			{"platform", "gift_id", "gifts", "items", "gold", "earnings", "house"},
			{"linkv", "'@SUM(A1)", "1", "1", "10", "0", "10"}, {"linkv", "rose", "1", "1", "5", "0", "5"}}},
		{"/admin/v1/reports/gifts?group=room", [][]string{
			{"platform", "room_id", "gifts", "items", "gold", "earnings", "house"}, {"linkv", "'+room", "2", "2", "15", "0", "15"}}},
		{"/admin/v1/rooms/linkv/%2Broom/leaderboard/receivers", [][]string{
			{"rank", "receiver_id", "gifts", "gold", "earnings"}, {"1", "'-host", "2", "15", "0"}}},
		{"/admin/v1/rooms/linkv/%2Broom/leaderboard/senders?window=1h&limit=1", [][]string{
			{"rank", "sender_id", "gifts", "gold", "earnings"}, {"1", "'=evil", "1", "10", "0"}}},
		{"/admin/v1/senders/%3Devil/spend", [][]string{{"sender_id", "gifts", "gold"}, {"'=evil", "1", "10"}}},
	} {
		hdr, got := getCSV(t, e, tc.path)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.path, got, tc.want)
		}
		if ct := hdr.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", tc.path, ct)
		}
	}
	// The receiver's report and ledger: a header, then escaped text cells,
	// numbers (even negative ones) as they are.
	_, recs := getCSV(t, e, "/admin/v1/earnings/-host/ledger")
	if len(recs) != 3 || recs[0][0] != "created_at" || recs[1][1] != "gift" || recs[1][8] != "fan" || recs[2][8] != "'=evil" || recs[2][10] != "'@SUM(A1)" {
		t.Errorf("ledger csv: %q", recs)
	}
	_, recs = getCSV(t, e, "/admin/v1/earnings/-host/report")
	if len(recs) != 2 || recs[0][0] != "receiver_id" || recs[1][0] != "'-host" || recs[1][3] != "2" || recs[1][4] != "15" {
		t.Errorf("report csv: %q", recs)
	}
	// JSON keeps values as they are.
	a := e.adm(t, "GET", "/admin/v1/reports/gifts?group=sender", "")
	rows, _ := a.m["rows"].([]any)
	if a.code != 200 || len(rows) != 2 || rows[0].(map[string]any)["sender_id"] != "=evil" || a.m["next_offset"] != nil {
		t.Errorf("json: %d %s", a.code, a.raw)
	}
}

func TestReports_JSONAnswers(t *testing.T) {
	e := newEnv(t)
	giveGift(t, e, "g1", "fan", "host", "r1", "rose", 10)
	giveGift(t, e, "g2", "fan", "host", "r1", "rose", 20)
	giveGift(t, e, "g3", "other", "host", "r1", "rose", 5)
	if _, err := e.store.Reverse(context.Background(), ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "g3"}, Key: "rev"}); err != nil {
		t.Fatal(err)
	}

	a := e.adm(t, "GET", "/admin/v1/rooms/linkv/r1/leaderboard/senders?window=24h", "")
	senders, _ := a.m["senders"].([]any)
	if a.code != 200 || len(senders) != 1 || senders[0].(map[string]any)["sender_id"] != "fan" || senders[0].(map[string]any)["gold"] != float64(30) {
		t.Errorf("senders (g3 reversed): %d %s", a.code, a.raw)
	}
	a = e.adm(t, "GET", "/admin/v1/senders/fan/spend", "")
	if a.code != 200 || a.m["gifts"] != float64(2) || a.m["gold"] != float64(30) {
		t.Errorf("spend: %d %s", a.code, a.raw)
	}
	a = e.adm(t, "GET", "/admin/v1/earnings/host/report?from=2000-01-01&to=2000-01-31", "")
	if a.code != 200 || a.m["gifts"] != float64(0) || a.m["from"] != "2000-01-01T00:00:00Z" {
		t.Errorf("an empty period: %d %s", a.code, a.raw)
	}
	a = e.adm(t, "GET", "/admin/v1/earnings/host/report", "")
	if a.code != 200 || a.m["gifts"] != float64(3) || a.m["gold"] != float64(35) {
		t.Errorf("the last 24 hours: %d %s", a.code, a.raw)
	}
	// Two pages of two, then nothing left.
	var kinds []string
	path := "/admin/v1/earnings/host/ledger?limit=2"
	for range 3 {
		a = e.adm(t, "GET", path, "")
		entries, _ := a.m["entries"].([]any)
		if a.code != 200 {
			t.Fatalf("ledger: %d %s", a.code, a.raw)
		}
		for _, x := range entries {
			kinds = append(kinds, x.(map[string]any)["request_id"].(string))
		}
		next, ok := a.m["next_before"].(string)
		if !ok {
			break
		}
		path = "/admin/v1/earnings/host/ledger?limit=2&before=" + url.QueryEscape(next)
	}
	if want := []string{"g3", "g2", "g1"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("ledger pages: %q, want %q (the house took g3's reversal, so host's ledger has gifts only at share 0)", kinds, want)
	}
	a = e.adm(t, "GET", "/admin/v1/earnings/host", "")
	if _, ok := a.m["held"]; a.code != 404 && !ok {
		t.Errorf("earnings: no held: %d %s", a.code, a.raw)
	}
}

func TestReports_BadInputIsA400NamingTheParameter(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("x", 129)
	for _, tc := range []struct {
		path, param string
	}{
		{"/admin/v1/reports/gifts", "group"},
		{"/admin/v1/reports/gifts?group=country", "group"},
		{"/admin/v1/reports/gifts?group=sender&group=room", "group"},
		{"/admin/v1/reports/gifts?group=sender&from=yesterday", "from"},
		{"/admin/v1/reports/gifts?group=sender&to=2026-13-01", "to"},
		{"/admin/v1/reports/gifts?group=sender&from=2026-11-02&to=2026-11-01", "from"},
		{"/admin/v1/reports/gifts?group=sender&from=2026-10-01&to=2026-11-02", "from"},
		{"/admin/v1/reports/gifts?group=sender&platform=tiktok", "platform"},
		{"/admin/v1/reports/gifts?group=sender&app_id=" + long, "app_id"},
		{"/admin/v1/reports/gifts?group=sender&limit=0", "limit"},
		{"/admin/v1/reports/gifts?group=sender&limit=10001", "limit"},
		{"/admin/v1/reports/gifts?group=sender&limit=ten", "limit"},
		{"/admin/v1/reports/gifts?group=sender&offset=-1", "offset"},
		{"/admin/v1/reports/gifts?group=sender&format=xlsx", "format"},
		{"/admin/v1/reports/gifts?group=sender&grop=room", "grop"},
		{"/admin/v1/rooms/tiktok/r1/leaderboard/senders", "platform"},
		{"/admin/v1/rooms/linkv/" + long + "/leaderboard/senders", "room_id"},
		{"/admin/v1/rooms/linkv/r1/leaderboard/senders?window=8d", "window"},
		{"/admin/v1/rooms/linkv/r1/leaderboard/senders?window=30s", "window"},
		{"/admin/v1/rooms/linkv/r1/leaderboard/receivers?window=soon", "window"},
		{"/admin/v1/rooms/linkv/r1/leaderboard/receivers?limit=101", "limit"},
		{"/admin/v1/rooms/linkv/r1/leaderboard/receivers?from=2026-11-01", "from"},
		{"/admin/v1/senders/bad%20id/spend", "user_id"},
		{"/admin/v1/senders/fan/spend?format=pdf", "format"},
		{"/admin/v1/earnings/host/report?from=2026-11-01T00:00:00", "from"},
		{"/admin/v1/earnings/host/report?from=2026-01-01&to=2026-03-01", "from"},
		{"/admin/v1/earnings/host/ledger?before=42", "before"},
		{"/admin/v1/earnings/host/ledger?limit=501", "limit"},
		{"/admin/v1/earnings/" + long + "/ledger", "receiver_id"},
	} {
		a := e.adm(t, "GET", tc.path, "")
		if a.code != 400 || a.errCode() != "bad_request" || !strings.HasPrefix(a.errMessage(), tc.param+":") {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.path, a.code, a.raw, tc.param)
		}
	}
}
