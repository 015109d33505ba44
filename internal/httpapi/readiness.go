package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
)

// ErrDraining is why a giftd that is shutting down is not ready.
var ErrDraining = errors.New("shutting down")

// readyMaxAge is how long a readiness answer is reused: a flood of /readyz
// probes costs the database at most one check per readyMaxAge.
const readyMaxAge = time.Second

// Readiness is whether giftd should get traffic: its database is reachable
// and migrated, and it is not shutting down. /readyz asks it, so does a
// background probe (Run), and giftd_ready shows the latest answer. The
// database is checked at most once per readyMaxAge, one check at a time;
// callers in between share the last answer.
type Readiness struct {
	check    func(context.Context) error // the database's readiness: one call on the store
	now      func() time.Time
	log      *slog.Logger
	gauge    prometheus.Gauge
	draining atomic.Bool
	last     atomic.Int32 // 0 unknown, 1 ready, 2 not ready: to log changes only

	mu      sync.Mutex    // guards what follows, and orders Drain against a check setting the gauge
	checked time.Time     // when err was found; zero: never
	err     error         // the last check's answer
	running chan struct{} // closed when the check under way ends; nil: none under way
}

// NewReadiness returns the readiness of store, registering giftd_ready on
// reg (nil: not registered).
func NewReadiness(reg prometheus.Registerer, store *ledger.Store, log *slog.Logger) *Readiness {
	return newReadiness(reg, store.Ready, time.Now, log)
}

// newReadiness is NewReadiness with the database's check and the clock
// given, so that tests can count checks and move time.
func newReadiness(reg prometheus.Registerer, check func(context.Context) error, now func() time.Time, log *slog.Logger) *Readiness {
	r := &Readiness{check: check, now: now, log: log, gauge: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "giftd_ready",
		Help: "1 when giftd is ready for traffic (database reachable and migrated, not shutting down), else 0; updated by /readyz and a background probe.",
	})}
	if reg != nil {
		reg.MustRegister(r.gauge)
	}
	return r
}

// Check returns nil when giftd is ready, ErrDraining while it shuts down,
// or why its database is not ready, or ctx's error if ctx ends while it
// waits for another caller's check. The answer is at most readyMaxAge old;
// a caller that finds it older checks the database, unless a check is under
// way already: then it waits for that one's answer. It logs changes, not
// every failure.
func (r *Readiness) Check(ctx context.Context) (err error) {
	r.mu.Lock()
	switch {
	case r.draining.Load():
		r.mu.Unlock()
		r.logChange(ErrDraining)
		return ErrDraining
	case r.running != nil:
		running := r.running
		r.mu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return ctx.Err()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.draining.Load() {
			return ErrDraining
		}
		return r.err
	case !r.checked.IsZero() && r.now().Sub(r.checked) < readyMaxAge:
		defer r.mu.Unlock()
		return r.err
	}
	running := make(chan struct{})
	r.running = running
	r.mu.Unlock()
	err = errors.New("readiness check did not return")
	defer func() { // deferred, so that waiters are released even if the check panics
		r.mu.Lock()
		if r.draining.Load() { // Drain may have run meanwhile: it wins
			err = ErrDraining
		}
		r.err, r.checked, r.running = err, r.now(), nil
		if err != nil {
			r.gauge.Set(0)
		} else {
			r.gauge.Set(1)
		}
		close(running)
		r.mu.Unlock()
		r.logChange(err)
	}()

	// Not cancelled with the caller: the answer is shared, and one caller
	// hanging up must not make it "not ready" for everyone.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	return r.check(cctx)
}

// logChange logs err if it changes whether giftd is ready.
func (r *Readiness) logChange(err error) {
	state := int32(1)
	if err != nil {
		state = 2
	}
	if r.last.Swap(state) != state {
		if err != nil {
			r.log.Warn("not ready", "error", err.Error())
		} else {
			r.log.Info("ready")
		}
	}
}

// Drain makes giftd not ready from now on, so that load balancers stop
// sending it traffic before it stops accepting.
func (r *Readiness) Drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.draining.Store(true)
	r.gauge.Set(0)
}

// Run checks readiness every interval until ctx ends, so that giftd_ready
// is fresh even when nothing calls /readyz.
func (r *Readiness) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.Check(ctx) //nolint:errcheck // the gauge and the log carry the result
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readiness is d.Ready, or one of its own for a Deps that has none.
func (d Deps) readiness() *Readiness {
	if d.Ready != nil {
		return d.Ready
	}
	return NewReadiness(nil, d.Store, d.Log)
}

// handleReadyz answers 200 while giftd is ready, else 503, from an answer
// at most readyMaxAge old (see Readiness.Check). The reason goes to the
// log, not to the (possibly public) caller.
func handleReadyz(ready *Readiness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := ready.Check(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

func handleHealthz() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}
