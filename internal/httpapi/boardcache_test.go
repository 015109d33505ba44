package httpapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"giftd/internal/ledger"
)

func TestBoardCache_OneReadServesEveryoneUntilTTL(t *testing.T) {
	c := newBoardCache(time.Hour)
	k := boardKey{platform: "linkv", room: "r1", side: ledger.Senders, window: time.Hour, limit: 20}
	var reads atomic.Int32
	release := make(chan struct{})
	read := func(context.Context) (ledger.Leaderboard, error) {
		reads.Add(1)
		<-release
		return ledger.Leaderboard{Leaders: []ledger.Leader{{Rank: 1, ID: "fan", Gold: 5}}}, nil
	}
	// However the 20 askers interleave with the read (before it, during
	// it, after it), one read answers them all within the ttl.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			b, err := c.get(context.Background(), k, read)
			if err != nil || len(b.Leaders) != 1 || b.Leaders[0].ID != "fan" {
				t.Errorf("got %+v, %v", b, err)
			}
		})
	}
	close(release)
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Errorf("%d reads, want 1", n)
	}
	// Another key is another read.
	k2 := k
	k2.limit = 10
	if _, err := c.get(context.Background(), k2, read); err != nil || reads.Load() != 2 {
		t.Errorf("another limit: %d reads, %v", reads.Load(), err)
	}
}

func TestBoardCache_ExpiredOrFailedReadsAgain(t *testing.T) {
	k := boardKey{platform: "linkv", room: "r1", side: ledger.Receivers, window: time.Hour, limit: 20}
	var reads int
	read := func(context.Context) (ledger.Leaderboard, error) {
		reads++
		if reads == 1 {
			return ledger.Leaderboard{}, errors.New("database down")
		}
		return ledger.Leaderboard{}, nil
	}
	c := newBoardCache(time.Hour)
	if _, err := c.get(context.Background(), k, read); err == nil {
		t.Fatal("the failed read's error was not returned")
	}
	if _, err := c.get(context.Background(), k, read); err != nil || reads != 2 {
		t.Errorf("after a failed read: %d reads, %v; want a new read", reads, err)
	}
	// A read older than the ttl is read again.
	c.m[k].at = time.Now().Add(-2 * time.Hour)
	if _, err := c.get(context.Background(), k, read); err != nil || reads != 3 {
		t.Errorf("after the ttl: %d reads, %v; want a new read", reads, err)
	}
	if _, err := c.get(context.Background(), k, read); err != nil || reads != 3 {
		t.Errorf("within the ttl: %d reads, %v; want none", reads, err)
	}
	// A ttl of 0 is off: every ask reads.
	c = newBoardCache(0)
	for range 3 {
		c.get(context.Background(), k, read) //nolint:errcheck // counted below
	}
	if reads != 6 {
		t.Errorf("ttl 0: %d reads for 3 asks, want 3", reads-3)
	}
}
