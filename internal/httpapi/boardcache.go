package httpapi

import (
	"context"
	"sync"
	"time"

	"giftd/internal/ledger"
)

// maxBoards bounds how many leaderboards a boardCache holds.
const maxBoards = 10000

// boardCache answers a room's leaderboard from memory for up to ttl after
// it was read, and lets one request per leaderboard read it meanwhile (the
// others wait for that read): a hot room's list, asked by every viewer who
// opens it, costs the database one query per ttl per replica, however
// often it is asked. A zero ttl (or a nil cache) reads every time.
type boardCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[boardKey]*boardRead
}

type boardKey struct {
	platform, room string
	side           ledger.BoardSide
	window         time.Duration
	limit          int
}

// boardRead is one read of a leaderboard: b and err are set, and at, before
// done is closed.
type boardRead struct {
	done chan struct{}
	b    ledger.Leaderboard
	err  error
	at   time.Time
}

func newBoardCache(ttl time.Duration) *boardCache {
	return &boardCache{ttl: ttl, m: map[boardKey]*boardRead{}}
}

// get returns the leaderboard k: a read finished less than ttl ago (and
// not failed), else the result of the read under way, else a new read.
func (c *boardCache) get(ctx context.Context, k boardKey, read func(context.Context) (ledger.Leaderboard, error)) (ledger.Leaderboard, error) {
	if c == nil || c.ttl <= 0 {
		return read(ctx)
	}
	c.mu.Lock()
	r := c.m[k]
	if r != nil && r.finished() && (r.err != nil || time.Since(r.at) >= c.ttl) {
		r = nil
	}
	if r != nil {
		c.mu.Unlock()
		select {
		case <-r.done:
			return r.b, r.err
		case <-ctx.Done():
			return ledger.Leaderboard{}, ctx.Err()
		}
	}
	if len(c.m) >= maxBoards {
		c.sweep()
	}
	r = &boardRead{done: make(chan struct{})}
	c.m[k] = r
	c.mu.Unlock()
	// The read serves everyone who asks meanwhile, so it does not end when
	// the request that started it goes away; it is bounded like one.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminTimeout)
	r.b, r.err = read(rctx)
	cancel()
	r.at = time.Now()
	close(r.done)
	return r.b, r.err
}

func (r *boardRead) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// sweep forgets the finished reads older than ttl, and if that is not
// enough, every finished read. c.mu is held.
func (c *boardCache) sweep() {
	for k, r := range c.m {
		if r.finished() && time.Since(r.at) >= c.ttl {
			delete(c.m, k)
		}
	}
	if len(c.m) >= maxBoards {
		for k, r := range c.m {
			if r.finished() {
				delete(c.m, k)
			}
		}
	}
}
