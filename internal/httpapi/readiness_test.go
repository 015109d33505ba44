package httpapi_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// fakeCheck stands for the database's readiness check: it counts its calls,
// and each waits for gate to be closed before it answers err.
type fakeCheck struct {
	calls   atomic.Int32
	entered chan struct{}
	gate    chan struct{}
	mu      sync.Mutex
	err     error
}

func (c *fakeCheck) check(ctx context.Context) error {
	c.calls.Add(1)
	select {
	case c.entered <- struct{}{}:
	default:
	}
	<-c.gate
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *fakeCheck) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestReadyz_ProbeFloodChecksDatabaseAtMostOncePerSecond: however many
// /readyz calls arrive on both listeners, the database is checked at most
// once per second of the (fake) clock, and never while a check is running;
// a failed check and Drain still answer 503 and set giftd_ready to 0.
func TestReadyz_ProbeFloodChecksDatabaseAtMostOncePerSecond(t *testing.T) {
	store, err := ledger.Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fc := &fakeCheck{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	ready := httpapi.NewReadinessWith(reg, fc.check, clock.Now, log)
	deps := httpapi.Deps{
		Store: store, Callbacks: []httpapi.Callback{{Doc: "linkv-debit", Method: http.MethodPost, Path: "/linkv/debit", Handler: http.NotFoundHandler()}},
		AdminToken: token, Metrics: httpapi.NewMetrics(reg),
		Ready: ready, Gatherer: reg, Log: log,
	}
	public, admin := httptest.NewServer(httpapi.NewPublic(deps)), httptest.NewServer(httpapi.NewAdmin(deps))
	t.Cleanup(public.Close)
	t.Cleanup(admin.Close)

	// flood calls /readyz n times at once, half on each listener, and
	// returns the status codes once all have answered.
	flood := func(n int) chan int {
		codes := make(chan int, n)
		var wg sync.WaitGroup
		for i := range n {
			base := public.URL
			if i%2 == 1 {
				base = admin.URL
			}
			wg.Go(func() {
				resp, err := http.Get(base + "/readyz")
				if err != nil {
					t.Error(err)
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			})
		}
		go func() { wg.Wait(); close(codes) }()
		return codes
	}
	expect := func(step string, codes chan int, want int, calls int32) {
		t.Helper()
		for code := range codes {
			if code != want {
				t.Errorf("%s: /readyz %d, want %d", step, code, want)
			}
		}
		if got := fc.calls.Load(); got != calls {
			t.Errorf("%s: %d database checks in all, want %d", step, got, calls)
		}
	}
	gauge := func(step, want string) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(
			"# HELP giftd_ready 1 when giftd is ready for traffic (database reachable and migrated, not shutting down), else 0; updated by /readyz and a background probe.\n"+
				"# TYPE giftd_ready gauge\ngiftd_ready "+want+"\n"), "giftd_ready"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}

	// A flood while the first check hangs: the others wait for it.
	codes := flood(64)
	<-fc.entered
	waitInFlight(t, reg, 64)
	close(fc.gate)
	expect("first flood", codes, 200, 1)
	gauge("first flood", "1")

	clock.advance(999 * time.Millisecond)
	expect("0.999 s later", flood(64), 200, 1)
	clock.advance(time.Millisecond)
	expect("1 s later", flood(64), 200, 2)

	fc.fail(errors.New("database down"))
	clock.advance(time.Second)
	expect("database down", flood(8), 503, 3)
	gauge("database down", "0")

	fc.fail(nil)
	clock.advance(time.Second)
	expect("database back", flood(8), 200, 4)
	ready.Drain()
	gauge("draining", "0")
	expect("draining", flood(8), 503, 4)
	clock.advance(time.Hour)
	expect("draining, an hour later", flood(8), 503, 4)
	gauge("draining, an hour later", "0")
}

// waitInFlight waits until n HTTP requests are being answered: the event
// that says a flood has arrived, polled since a gauge has no way to signal.
func waitInFlight(t *testing.T, reg prometheus.Gatherer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		sum := 0.0
		for _, mf := range families {
			if mf.GetName() == "giftd_http_requests_in_flight" {
				for _, m := range mf.GetMetric() {
					sum += m.GetGauge().GetValue()
				}
			}
		}
		if int(sum) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v requests in flight after 10 s, want %d", sum, n)
		}
		time.Sleep(time.Millisecond)
	}
}
