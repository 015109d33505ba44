package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"giftd/internal/pgtest"
)

// TestReplicas_SameRequestsToThreeProcesses runs three giftd processes on
// one database and sends every request to two of them at once, over a few
// wallets that cannot pay for all: exactly-once and no overdraft must hold
// across processes.
func TestReplicas_SameRequestsToThreeProcesses(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := waitCtx(t, 2*time.Minute)
	const wallets, perWallet, n = 4, 100, 600
	store := seededStore(t, ctx, dbURL, wallets, perWallet)
	replicas := []*server{newServer(t, dbURL), newServer(t, dbURL), newServer(t, dbURL)}
	client := linkvClient{&http.Client{Timeout: 10 * time.Second}}
	reqs := make([]*request, n)
	copies := make([][2]int, n)
	got200 := make([][2]bool, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 48)
	for i := range reqs {
		r := &request{id: fmt.Sprintf("rep-%04d", i), user: fmt.Sprint("w", rand.IntN(wallets))}
		r.body = signedForm(r.id, r.user, 1)
		reqs[i] = r
		a, b := rand.IntN(3), rand.IntN(2)
		if b >= a {
			b++
		}
		for k, replica := range []int{a, b} {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				copies[i][k], got200[i][k] = client.send(ctx, replicas[replica], r.body)
			}()
		}
	}
	wg.Wait()
	debited := 0
	for i, r := range reqs {
		if copies[i][0] != copies[i][1] {
			t.Errorf("%s: the two replicas answered %d and %d", r.id, copies[i][0], copies[i][1])
		}
		r.final = copies[i][0]
		r.got200 = got200[i][0] || got200[i][1] // either copy's 200 must be a debit
		if r.final == http.StatusOK {
			debited++
		}
	}
	if debited != wallets*perWallet {
		t.Errorf("%d requests debited, want %d (all the gold there was)", debited, wallets*perWallet)
	}
	checkRequests(t, ctx, store, reqs)
	checkBooks(t, ctx, store)
	auditPasses(t, dbURL)
}
