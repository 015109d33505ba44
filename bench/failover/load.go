package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"giftd/internal/linkv"
)

// request is one LinkV debit as the client saw it, over all its attempts.
type request struct {
	id, user string
	gold     int64
	sent     time.Time
	ok       time.Time // when the first 200 came; zero if none
	attempts int
	final    int // the last status answered; 0 if the last attempt got none
}

// retryPolicy is LinkV's SDK as the README describes it: an answer of 500,
// or none, is retried with the same request_id and sign, up to Retries
// times, waiting Backoff, then twice that, and so on.
type retryPolicy struct {
	Retries int
	Backoff time.Duration
	Timeout time.Duration // per attempt
}

func (p retryPolicy) String() string {
	waits := make([]string, p.Retries)
	for i := range waits {
		waits[i] = (p.Backoff << i).String()
	}
	return fmt.Sprintf("1 attempt + up to %d retries on 500 or no answer (after %s), %s per attempt",
		p.Retries, strings.Join(waits, ", "), p.Timeout)
}

// loader plays LinkV against one giftd: workers each send one debit at a
// time, retried by the policy, with a short pause between debits.
type loader struct {
	url, appID, secret string
	policy             retryPolicy
	workers            int
	pause              time.Duration
	client             *http.Client
}

// run is the load of one phase: loaders send debits of 1–5 gold from the
// phase's wallets until stop is closed; each finishes the debit in hand
// (bounded by the retry policy) and returns.
type run struct {
	l                          *loader
	prefix                     string
	wallets                    []string
	mu                         sync.Mutex
	reqs                       []*request
	oks                        []time.Time
	attempts, s500s, noAnswers atomic.Int64
}

func (l *loader) start(ctx context.Context, prefix string, wallets []string, stop <-chan struct{}) (*run, func()) {
	r := &run{l: l, prefix: prefix, wallets: wallets}
	var wg sync.WaitGroup
	for w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				q := &request{id: fmt.Sprintf("%s-%02d-%06d", prefix, w, seq),
					user: wallets[rand.IntN(len(wallets))], gold: 1 + rand.Int64N(5)}
				r.send(ctx, q)
				r.mu.Lock()
				r.reqs = append(r.reqs, q)
				r.mu.Unlock()
				select {
				case <-time.After(l.pause):
				case <-ctx.Done():
				}
			}
		}()
	}
	return r, wg.Wait
}

func (r *run) send(ctx context.Context, q *request) {
	body := signedForm(r.l.appID, r.l.secret, q)
	q.sent = time.Now()
	for attempt := 0; attempt <= r.l.policy.Retries && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(r.l.policy.Backoff << (attempt - 1)):
			case <-ctx.Done():
				return
			}
		}
		q.attempts++
		r.attempts.Add(1)
		status, err := r.post(ctx, body)
		if err != nil {
			q.final = 0
			r.noAnswers.Add(1)
			continue
		}
		q.final = status
		if status == http.StatusOK {
			q.ok = time.Now()
			r.mu.Lock()
			r.oks = append(r.oks, q.ok)
			r.mu.Unlock()
			return
		}
		if status != http.StatusInternalServerError {
			return
		}
		r.s500s.Add(1)
	}
}

func (r *run) post(ctx context.Context, body string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.l.policy.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.l.url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := r.l.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the status matters
	return resp.StatusCode, nil
}

// signedForm is LinkV's debit callback for q, signed as LinkV signs it.
func signedForm(appID, secret string, q *request) string {
	now := time.Now().Unix()
	f := map[string]string{
		"app_id": appID, "request_id": q.id, "user_id": q.user, "type": "1",
		"nonce":      "failover" + strconv.FormatInt(now, 10) + strconv.Itoa(rand.IntN(1e8)),
		"gold":       strconv.FormatInt(q.gold, 10),
		"expriation": strconv.FormatInt(now+86400, 10),
		"reason":     `{"gift_id":"1","send_num":1,"resource_id":"failover-room","vtype":"1","receiver_id":"failover-host"}`,
	}
	f["sign"] = linkv.Sign(f, secret)
	v := url.Values{}
	for k, s := range f {
		v.Set(k, s)
	}
	return v.Encode()
}

// longestGap is the longest time in [from, to] with no 200 answered, and
// when it began.
func longestGap(oks []time.Time, from, to time.Time) (gap time.Duration, at time.Time) {
	prev := from
	for _, t := range append(oks, to) {
		if t.Before(from) || t.After(to) {
			continue
		}
		if d := t.Sub(prev); d > gap {
			gap, at = d, prev
		}
		prev = t
	}
	return gap, at
}
