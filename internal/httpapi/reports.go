package httpapi

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/polyv"
)

// Reports and leaderboards (docs/economy.md#reports-and-leaderboards), in
// JSON or, with Accept: text/csv or ?format=csv, CSV. Every parameter is
// checked before the database is asked: bad input is a 400 naming it.

const (
	// maxReportPeriod bounds a report's period (a month, for finance).
	maxReportPeriod = 31 * 24 * time.Hour
	// maxReportRows bounds a report's page.
	maxReportRows = 10000
	// maxBoardWindow and maxBoardRows bound a room's leaderboard, which
	// reads one index entry per gift of the room in the window.
	maxBoardWindow = 7 * 24 * time.Hour
	maxBoardRows   = 100
	// reportTimeout bounds a report over a whole period; the admin
	// listener's write timeout (read timeout + database timeout + 5 s, at
	// least 5.1 s) cuts answers later than that anyway.
	reportTimeout = 10 * time.Second
)

// query is a report's query string, checked parameter by parameter; the
// first problem is written as a 400 naming its parameter, and later reads
// are no-ops.
type query struct {
	w      http.ResponseWriter
	values url.Values
	failed bool
}

// newQuery refuses parameters not in allowed (a misspelt one would
// otherwise be silently ignored) and repeated ones.
func newQuery(w http.ResponseWriter, r *http.Request, allowed ...string) *query {
	q := &query{w: w, values: r.URL.Query()}
	names := make([]string, 0, len(q.values))
	for name := range q.values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case name != "format" && !slices.Contains(allowed, name):
			q.fail(name, "unknown parameter; this route takes "+strings.Join(append(allowed, "format"), ", "))
		case len(q.values[name]) > 1:
			q.fail(name, "given more than once")
		}
	}
	return q
}

func (q *query) fail(name, problem string) {
	if !q.failed {
		q.failed = true
		writeError(q.w, http.StatusBadRequest, "bad_request", name+": "+problem)
	}
}

func (q *query) ok() bool { return !q.failed }

// csv reports whether the answer is to be CSV: ?format=csv, or no format
// and an Accept header that names text/csv.
func (q *query) csv(r *http.Request) bool {
	switch q.values.Get("format") {
	case "csv":
		return true
	case "json":
		return false
	case "":
		return strings.Contains(r.Header.Get("Accept"), "text/csv")
	default:
		q.fail("format", "must be json or csv")
		return false
	}
}

// intIn is parameter name as an integer from lo to hi, def when absent.
func (q *query) intIn(name string, lo, hi, def int) int {
	s := q.values.Get(name)
	if s == "" || q.failed {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		q.fail(name, fmt.Sprintf("must be an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

// oneOf is parameter name, one of choices or "" when absent.
func (q *query) oneOf(name string, choices ...string) string {
	s := q.values.Get(name)
	if s != "" && !slices.Contains(choices, s) {
		q.fail(name, "must be one of "+strings.Join(choices, ", "))
		return ""
	}
	return s
}

// text is parameter name as a platform id (app_id): at most maxIDLen bytes
// of storable text, "" when absent.
func (q *query) text(name string) string {
	s := q.values.Get(name)
	if len(s) > maxIDLen || !storable(s) {
		q.fail(name, fmt.Sprintf("must be at most %d bytes of UTF-8 text without NUL", maxIDLen))
		return ""
	}
	return s
}

// parseReportTime reads a date (UTC midnight) or an RFC 3339 time.
func parseReportTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// period is [from, to): to defaults to now, from to 24 hours before to;
// from must be before to, and the period at most maxReportPeriod.
func (q *query) period(now time.Time) (from, to time.Time) {
	to = now
	if s := q.values.Get("to"); s != "" {
		t, ok := parseReportTime(s)
		if !ok {
			q.fail("to", "must be a date (2026-11-01, UTC midnight) or an RFC 3339 time (2026-11-01T08:00:00Z)")
		}
		to = t
	}
	from = to.Add(-24 * time.Hour)
	if s := q.values.Get("from"); s != "" {
		t, ok := parseReportTime(s)
		if !ok {
			q.fail("from", "must be a date (2026-11-01, UTC midnight) or an RFC 3339 time (2026-11-01T08:00:00Z)")
		}
		from = t
	}
	switch {
	case q.failed:
	case !from.Before(to):
		q.fail("from", "must be before to")
	case to.Sub(from) > maxReportPeriod:
		q.fail("from", fmt.Sprintf("the period from from to to must be at most %d days", maxReportPeriod/(24*time.Hour)))
	}
	return from.UTC(), to.UTC()
}

// window is a leaderboard's window ending now: a Go duration (90m, 24h)
// or a number of days (7d), from a minute to maxBoardWindow; 24h when absent.
func (q *query) window() time.Duration {
	s := q.values.Get("window")
	if s == "" {
		return 24 * time.Hour
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < time.Minute || d > maxBoardWindow {
		q.fail("window", fmt.Sprintf("must be a duration from 1m to %dd (90m, 24h, 7d)", maxBoardWindow/(24*time.Hour)))
	}
	return d
}

// cell is a CSV cell: text is escaped against formula injection, numbers
// and times are written as they are.
type cell = any

// table is an answer that has a CSV form: a header and rows.
type table struct {
	// name is the CSV file's name, without .csv.
	name   string
	header []string
	rows   [][]cell
}

// csvText makes a text cell safe to open in a spreadsheet: a value that
// starts with =, +, -, @ (or a tab or carriage return, which some
// spreadsheets skip before one) gets a leading ', so that it is never
// taken for a formula.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (t table) write(w http.ResponseWriter) {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cw.Write(t.header) //nolint:errcheck // cw.Error below
	for _, row := range t.rows {
		rec := make([]string, len(row))
		for i, c := range row {
			switch v := c.(type) {
			case string:
				rec[i] = csvText(v)
			case *string:
				if v != nil {
					rec[i] = csvText(*v)
				}
			case int:
				rec[i] = strconv.Itoa(v)
			case int64:
				rec[i] = strconv.FormatInt(v, 10)
			case *int64:
				if v != nil {
					rec[i] = strconv.FormatInt(*v, 10)
				}
			case *int:
				if v != nil {
					rec[i] = strconv.Itoa(*v)
				}
			case time.Time:
				rec[i] = v.UTC().Format(time.RFC3339Nano)
			default:
				panic(fmt.Sprintf("csv cell of type %T", c))
			}
		}
		cw.Write(rec) //nolint:errcheck // cw.Error below
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "encode csv: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+t.name+`.csv"`)
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes()) //nolint:errcheck // the client is gone
}

// groupKeyNames names a gift report's key column per group.
var groupKeyNames = map[ledger.ReportGroup]string{
	ledger.ByReceiver: "receiver_id", ledger.BySender: "sender_id", ledger.ByRoom: "room_id", ledger.ByGift: "gift_id",
}

func handleGiftReport(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	groups := make([]string, 0, len(ledger.ReportGroups()))
	for _, g := range ledger.ReportGroups() {
		groups = append(groups, string(g))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		q := newQuery(w, r, "group", "from", "to", "platform", "app_id", "limit", "offset")
		group := ledger.ReportGroup(q.oneOf("group", groups...))
		if q.ok() && group == "" {
			q.fail("group", "required, one of "+strings.Join(groups, ", "))
		}
		var f ledger.GiftFilter
		f.From, f.To = q.period(time.Now())
		f.Platform = q.oneOf("platform", linkv.Platform, polyv.Platform)
		f.AppID = q.text("app_id")
		limit := q.intIn("limit", 1, maxReportRows, 100)
		offset := q.intIn("offset", 0, 1_000_000, 0)
		asCSV := q.csv(r)
		if !q.ok() {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), reportTimeout)
		defer cancel()
		rows, err := store.GiftReport(ctx, group, f, limit, offset)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		key := groupKeyNames[group]
		perPlatform := group == ledger.ByRoom || group == ledger.ByGift
		if asCSV {
			t := table{name: "gifts-by-" + string(group), header: []string{key, "gifts", "items", "gold", "earnings", "house"}}
			if perPlatform {
				t.header = append([]string{"platform"}, t.header...)
			}
			for _, g := range rows {
				row := []cell{g.Key, g.Gifts, g.Items, g.Gold, g.Earnings, g.House}
				if perPlatform {
					row = append([]cell{g.Platform}, row...)
				}
				t.rows = append(t.rows, row)
			}
			t.write(w)
			return
		}
		out := make([]map[string]any, len(rows))
		for i, g := range rows {
			m := map[string]any{key: g.Key, "gifts": g.Gifts, "items": g.Items, "gold": g.Gold, "earnings": g.Earnings, "house": g.House}
			if perPlatform {
				m["platform"] = g.Platform
			}
			out[i] = m
		}
		var next any
		if len(rows) == limit {
			next = offset + limit
		}
		writeJSON(w, http.StatusOK, map[string]any{"group": group, "from": f.From, "to": f.To,
			"platform": f.Platform, "app_id": f.AppID, "rows": out, "next_offset": next})
	}
}

func handleLeaderboard(store *ledger.Store, log *slog.Logger, boards *boardCache, side ledger.BoardSide) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		platform, ok := platformParam(w, r)
		if !ok {
			return
		}
		room, ok := pathParam(w, r, "room_id")
		if !ok || !validText(w, "room_id", room) {
			return
		}
		q := newQuery(w, r, "window", "limit", "display")
		window := q.window()
		limit := q.intIn("limit", 1, maxBoardRows, 20)
		display := q.oneOf("display", "true", "false") == "true"
		asCSV := q.csv(r)
		if !q.ok() {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		k := boardKey{platform: platform, room: room, side: side, window: window, limit: limit}
		b, err := boards.get(ctx, k, func(ctx context.Context) (ledger.Leaderboard, error) {
			return store.RoomLeaderboard(ctx, platform, room, side, window, limit)
		})
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		id := "sender_id"
		if side == ledger.Receivers {
			id = "receiver_id"
		}
		leaders, hide := b.Leaders, false
		if display {
			if leaders, err = forDisplay(ctx, store, side, leaders); err != nil {
				writeLedgerError(w, log, err)
				return
			}
			hide = store.Safeguards().DisplayHideAmounts
		}
		if asCSV {
			header := []string{"rank", id, "gifts", "gold", "earnings"}
			if hide {
				header = header[:2]
			}
			t := table{name: "leaderboard-" + string(side), header: header}
			for _, l := range leaders {
				row := []cell{l.Rank, l.ID, l.Gifts, l.Gold, l.Earnings}
				t.rows = append(t.rows, row[:len(header)])
			}
			t.write(w)
			return
		}
		out := make([]map[string]any, len(leaders))
		for i, l := range leaders {
			out[i] = map[string]any{"rank": l.Rank, id: l.ID}
			if !hide {
				out[i]["gifts"], out[i]["gold"], out[i]["earnings"] = l.Gifts, l.Gold, l.Earnings
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"platform": platform, "room_id": room, "from": b.From, "to": b.To,
			string(side): out})
	}
}

// forDisplay applies the display rule of docs/safeguards.md#consent to a
// leaderboard meant for the public: a sender who has not consented is
// shown as "anonymous #rank" (ledger.DisplaySender); receivers (hosts,
// public by their role) keep their ids. It copies: the cached board is
// shared.
func forDisplay(ctx context.Context, store *ledger.Store, side ledger.BoardSide, leaders []ledger.Leader) ([]ledger.Leader, error) {
	if side != ledger.Senders || len(leaders) == 0 {
		return leaders, nil
	}
	ids := make([]string, len(leaders))
	for i, l := range leaders {
		ids[i] = l.ID
	}
	consents, err := store.Consents(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(leaders)
	for i := range out {
		out[i].ID = ledger.DisplaySender(out[i].ID, consents[out[i].ID], out[i].Rank)
	}
	return out, nil
}

func handleSenderSpend(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sender, ok := userIDParam(w, r)
		if !ok {
			return
		}
		q := newQuery(w, r)
		asCSV := q.csv(r)
		if !q.ok() {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		sp, err := store.SenderSpend(ctx, sender)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		if asCSV {
			table{name: "spend", header: []string{"sender_id", "gifts", "gold"},
				rows: [][]cell{{sp.SenderID, sp.Gifts, sp.Gold}}}.write(w)
			return
		}
		writeJSON(w, http.StatusOK, sp)
	}
}

func handleReceiverReport(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		receiver, ok := receiverParam(w, r)
		if !ok {
			return
		}
		q := newQuery(w, r, "from", "to")
		from, to := q.period(time.Now())
		asCSV := q.csv(r)
		if !q.ok() {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), reportTimeout)
		defer cancel()
		p, err := store.ReceiverPeriod(ctx, receiver, from, to)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		if asCSV {
			table{name: "earnings-report", header: []string{"receiver_id", "from", "to", "gifts", "gold", "earned",
				"taken_back", "shortfall", "net", "recovered", "paid_out"},
				rows: [][]cell{{p.ReceiverID, p.From, p.To, p.Gifts, p.Gold, p.Earned, p.TakenBack, p.Shortfall, p.Net,
					p.Recovered, p.PaidOut}}}.write(w)
			return
		}
		writeJSON(w, http.StatusOK, p)
	}
}

func handleEarningsLedger(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		receiver, ok := receiverParam(w, r)
		if !ok {
			return
		}
		q := newQuery(w, r, "limit", "before")
		limit := q.intIn("limit", 1, maxPageSize, 50)
		var before *ledger.EarningsCursor
		if s := q.values.Get("before"); s != "" && q.ok() {
			c, err := ledger.ParseEarningsCursor(s)
			if err != nil {
				q.fail("before", "must be the next_before of a previous page")
			}
			before = &c
		}
		asCSV := q.csv(r)
		if !q.ok() {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		entries, err := store.EarningsLedger(ctx, receiver, before, limit)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		if asCSV {
			t := table{name: "earnings-ledger", header: []string{"created_at", "kind", "account", "amount", "balance_after",
				"platform", "app_id", "request_id", "sender_id", "room_id", "gift_id", "gold", "share_bp", "gift_entry", "ref", "cursor"}}
			for _, e := range entries {
				t.rows = append(t.rows, []cell{e.CreatedAt, e.Kind, e.Account, e.Amount, e.BalanceAfter, e.Platform, e.AppID,
					e.RequestID, e.SenderID, e.RoomID, e.GiftID, e.Gold, e.ShareBP, e.GiftEntry, e.Ref, e.Cursor.String()})
			}
			t.write(w)
			return
		}
		page := map[string]any{"receiver_id": receiver, "entries": entries, "next_before": nil}
		if entries == nil {
			page["entries"] = []ledger.EarningsEntry{}
		}
		if len(entries) == limit {
			page["next_before"] = entries[len(entries)-1].Cursor.String()
		}
		writeJSON(w, http.StatusOK, page)
	}
}
