package webhook

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
)

// Config is how giftd delivers.
type Config struct {
	// Workers bounds the requests in flight: one per worker, each to a
	// different endpoint.
	Workers int
	// Timeout bounds one request.
	Timeout time.Duration
	// RetryBase and RetryMax bound the exponential backoff of a failing
	// endpoint (each wait jittered between half and all of it).
	RetryBase, RetryMax time.Duration
	// DeadAfter is how long an endpoint may fail without progress before
	// its delivery stops (the dead-letter state) until Redeliver.
	DeadAfter time.Duration
	// Batch is how many events one lease sends at most.
	Batch int
	// Poll is how often an idle worker looks for work.
	Poll time.Duration
	// AllowPrivate lets endpoints be loopback or private addresses.
	AllowPrivate bool
}

// partitionWait bounds, partitioned, the reads of one partition before a
// delivery (the horizon, the claim, the events).
const partitionWait = 5 * time.Second

// DefaultConfig returns the defaults of docs/configuration.md.
func DefaultConfig() Config {
	return Config{Workers: 4, Timeout: 10 * time.Second, RetryBase: time.Second, RetryMax: 10 * time.Minute,
		DeadAfter: 72 * time.Hour, Batch: 500, Poll: 100 * time.Millisecond}
}

// Deliverer sends events to the endpoints. Several, in one process or in
// several replicas, share the work through the endpoints' leases: one
// delivery at a time per endpoint, in position order.
type Deliverer struct {
	// stores returns the databases whose events are delivered: one, or
	// each partition's own in use now (NewPartitioned), each with its own
	// endpoints' rows.
	stores      func() []*ledger.Store
	partitioned bool
	next        atomic.Uint32 // the partition a worker looks at first
	cfg         Config
	client      *http.Client
	log         *slog.Logger
	owner       string
	lease       time.Duration
	metrics     *metrics
}

// New returns a Deliverer of the events in store; it registers its metrics
// on reg. store should have a pool of its own (at least Workers+1
// connections), so that delivery never takes the debits' connections.
func New(store *ledger.Store, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Deliverer {
	one := []*ledger.Store{store}
	return newDeliverer(func() []*ledger.Store { return one }, false, cfg, reg, log)
}

// NewPartitioned returns a Deliverer of every partition's events, parts
// returning each partition's own Store in partition order, those in use
// now (ledger.Store.PartitionStores: more once giftd reshard has doubled
// the cluster), read again at each round (docs/events.md#partitioned-mode):
// each partition's events go to each
// endpoint in that partition's position order, under a lease on that
// partition's row of the endpoint, so one delivery at a time per endpoint
// and partition; a payload names its partition. The metrics are New's,
// the lag being the worst partition's.
func NewPartitioned(parts func() []*ledger.Store, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Deliverer {
	return newDeliverer(parts, true, cfg, reg, log)
}

func newDeliverer(stores func() []*ledger.Store, partitioned bool, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Deliverer {
	b := make([]byte, 8)
	crand.Read(b) //nolint:errcheck // never fails
	transport := &http.Transport{
		DialContext:         dialer(cfg.AllowPrivate).DialContext,
		MaxIdleConnsPerHost: 2,
		MaxConnsPerHost:     cfg.Workers,
		TLSHandshakeTimeout: cfg.Timeout,
		IdleConnTimeout:     time.Minute,
	}
	return &Deliverer{
		stores: stores, partitioned: partitioned, cfg: cfg, log: log, owner: hex.EncodeToString(b),
		client: &http.Client{Transport: transport, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		// A lease outlives the longest run of requests a worker starts
		// under it (see run), so that two never send to one endpoint.
		lease:   3*cfg.Timeout + 5*time.Second,
		metrics: newMetrics(reg),
	}
}

// Run delivers until ctx ends: cfg.Workers workers, and the lag gauges
// refreshed every few seconds. It returns when all of them have stopped.
func (d *Deliverer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() { d.work(ctx) })
	}
	wg.Go(func() { d.watchLag(ctx, 2*time.Second) })
	wg.Wait()
}

func (d *Deliverer) work(ctx context.Context) {
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	for ctx.Err() == nil {
		busy, err := d.safeOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("webhook delivery", "err", err)
		}
		if busy {
			continue
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// safeOnce is Once, with a panic turned into an error: a bug in delivery
// must not take down the debits served by the same process. (The lease
// of the endpoint it held ends by itself.)
func (d *Deliverer) safeOnce(ctx context.Context) (busy bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			busy, err = false, fmt.Errorf("webhook delivery panicked: %v", p)
		}
	}()
	return d.Once(ctx)
}

// Once leases one endpoint that has events to deliver, sends them in
// order until one fails or the lease's budget is spent, and records how
// far it got. It returns false when no endpoint had work.
func (d *Deliverer) Once(ctx context.Context) (bool, error) {
	// Partitioned, each partition in turn from a rotating start, so that
	// one busy partition does not starve the others.
	stores := d.stores()
	first := int(d.next.Add(1)) % len(stores)
	var errs []error
	for k := range stores {
		p := (first + k) % len(stores)
		busy, err := d.onceOn(ctx, stores[p], p)
		if err != nil && d.partitioned {
			err = fmt.Errorf("partition %d: %w", p, err)
		}
		if busy {
			return true, err
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return false, errors.Join(errs...)
}

// onceOn is Once on the events and endpoints of store, partition p's.
func (d *Deliverer) onceOn(ctx context.Context, store *ledger.Store, p int) (bool, error) {
	// Partitioned, a partition that hangs (a server gone without a reset)
	// holds a worker only this long before it looks at the others.
	qctx, cancel := context.WithTimeout(ctx, partitionWait)
	defer cancel()
	if !d.partitioned {
		qctx = ctx
	}
	upTo, err := store.EventHorizon(qctx)
	if err != nil {
		return false, err
	}
	ep, ok, err := store.ClaimEndpoint(qctx, d.owner, d.lease, upTo)
	if err != nil || !ok {
		return false, err
	}
	start := time.Now()
	events, err := store.EndpointEvents(qctx, ep, upTo, d.cfg.Batch)
	if err != nil {
		return true, err // the lease ends by itself
	}
	o := ledger.DeliveryOutcome{Cursor: ep.Cursor, DeadAfter: d.cfg.DeadAfter}
	sent := 0
	for i, e := range events {
		// Start a request only while the lease outlasts it.
		if ctx.Err() != nil || time.Since(start) > d.lease-2*d.cfg.Timeout {
			break
		}
		if i == 0 && ep.Attempts > 0 {
			d.metrics.retries.WithLabelValues(ep.ID).Inc()
		}
		if d.partitioned {
			e.Partition = &p
		}
		if err := d.send(ep, e); err != nil {
			o.Err = err.Error()
			d.metrics.failures.WithLabelValues(ep.ID).Inc()
			break
		}
		d.metrics.delivered.WithLabelValues(ep.ID).Inc()
		o.Cursor, o.Delivered = e.Position, true
		sent++
	}
	if o.Err == "" && sent == len(events) && len(events) < d.cfg.Batch {
		o.Cursor = upTo // every event of its types up to the horizon is delivered
	}
	if o.Err != "" {
		attempts := ep.Attempts + 1
		if o.Delivered {
			attempts = 1
		}
		o.RetryIn = d.backoff(attempts)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	rec, err := store.RecordDelivery(rctx, d.owner, ep.ID, o)
	if err != nil {
		return true, err
	}
	if o.Err != "" {
		d.log.Warn("webhook delivery failed", "endpoint", ep.ID, "cursor", rec.Cursor, "attempts", rec.Attempts,
			"retry_in", o.RetryIn.String(), "state", rec.State, "err", o.Err)
	}
	return o.Err == "", nil
}

// backoff is the wait before attempt attempts+1: RetryBase doubled per
// attempt up to RetryMax, jittered between half and all of it.
func (d *Deliverer) backoff(attempts int) time.Duration {
	// Doubled step by step, never shifted: RetryBase << attempts overflows
	// into a negative wait after a few dozen failures.
	b := max(d.cfg.RetryBase, 1)
	for i := 1; i < attempts && b < d.cfg.RetryMax; i++ {
		if b > d.cfg.RetryMax/2 {
			b = d.cfg.RetryMax
			break
		}
		b *= 2
	}
	b = min(b, d.cfg.RetryMax)
	return b/2 + rand.N(b/2+1)
}

// Payload is the body of every delivery: the event as the feed serves it.
type Payload struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Position  int64           `json:"position"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
	// Partition is, in partitioned mode, the partition whose outbox holds
	// the event: Position is that partition's.
	Partition *int `json:"partition,omitempty"`
}

// send makes one signed request of e to ep; any answer but 2xx is a
// failure. The body read back is bounded: a garbage answer costs nothing.
func (d *Deliverer) send(ep ledger.Endpoint, e ledger.Event) error {
	body, err := json.Marshal(Payload{ID: e.ID, Type: e.Type, Position: e.Position, Timestamp: e.CreatedAt, Data: e.Data,
		Partition: e.Partition})
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	sig, err := Signature(ep.Secrets, e.ID, ts, body)
	if err != nil {
		return fmt.Errorf("endpoint %s: %w", ep.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("bad endpoint URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "giftd-webhooks")
	req.Header.Set("webhook-id", e.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := d.client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap() // without the URL, which may carry a token in its query
		}
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // only to reuse the connection
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
	return nil
}

// lags are every store's endpoint lags, the worst of each endpoint's
// partitions: the oldest undelivered event, dead if dead on any. It fails
// only when no store answers.
func (d *Deliverer) lags(ctx context.Context) ([]ledger.EndpointLag, error) {
	var out []ledger.EndpointLag
	at := map[string]int{}
	var errs []error
	stores := d.stores()
	for _, st := range stores {
		lags, err := st.EndpointLags(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range lags {
			i, ok := at[l.ID]
			if !ok {
				at[l.ID] = len(out)
				out = append(out, l)
				continue
			}
			if !l.Oldest.IsZero() && (out[i].Oldest.IsZero() || l.Oldest.Before(out[i].Oldest)) {
				out[i].Oldest = l.Oldest
			}
			out[i].Dead = out[i].Dead || l.Dead
		}
	}
	if len(errs) == len(stores) {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// watchLag refreshes the lag and dead-letter gauges every interval.
func (d *Deliverer) watchLag(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	seen := map[string]bool{}
	for {
		lags, err := d.lags(ctx)
		if err == nil {
			now := map[string]bool{}
			for _, l := range lags {
				now[l.ID] = true
				age := 0.0
				if !l.Oldest.IsZero() {
					age = max(0, time.Since(l.Oldest).Seconds())
				}
				d.metrics.lag.WithLabelValues(l.ID).Set(age)
				dead := 0.0
				if l.Dead {
					dead = 1
				}
				d.metrics.dead.WithLabelValues(l.ID).Set(dead)
			}
			for id := range seen {
				if !now[id] {
					d.metrics.lag.DeleteLabelValues(id)
					d.metrics.dead.DeleteLabelValues(id)
				}
			}
			seen = now
		} else if ctx.Err() == nil {
			d.log.Warn("webhook lag", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type metrics struct {
	delivered, failures, retries *prometheus.CounterVec
	lag, dead                    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "giftd_webhook_delivered_total",
			Help: "Events delivered to a webhook endpoint (answered 2xx), by endpoint id."}, []string{"endpoint"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "giftd_webhook_failures_total",
			Help: "Failed webhook requests (an error, a timeout or an answer other than 2xx), by endpoint id."}, []string{"endpoint"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "giftd_webhook_retries_total",
			Help: "Webhook deliveries that retry an event after a failure, by endpoint id."}, []string{"endpoint"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "giftd_webhook_lag_seconds",
			Help: "Age of the oldest event not yet delivered to a webhook endpoint (0: none), by endpoint id."}, []string{"endpoint"}),
		dead: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "giftd_webhook_dead",
			Help: "1 when a webhook endpoint's delivery is in the dead-letter state (stopped until redelivered)."}, []string{"endpoint"}),
	}
	reg.MustRegister(m.delivered, m.failures, m.retries, m.lag, m.dead)
	return m
}
