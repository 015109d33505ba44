// Package receiver is an example receiver of giftd's webhooks
// (docs/events.md): it checks each delivery's Standard Webhooks signature
// and hands every event to its handler once, dropping copies by
// webhook-id. It uses the standard library only: copy it into your own
// service. In production, record the ids you handled in the same database
// transaction as what you do with the event (a unique key on the id), not
// in memory as here.
package receiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is a delivery's body.
type Event struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Position  int64           `json:"position"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Receiver is an http.Handler for giftd's webhooks.
type Receiver struct {
	secrets [][]byte
	handle  func(Event) error
	mu      sync.Mutex
	seen    map[string]bool
}

// New returns a Receiver that accepts deliveries signed with any of
// secrets (whsec_…, several during a rotation) and calls handle once per
// event. A delivery handle fails is answered 500, and giftd sends it again.
func New(secrets []string, handle func(Event) error) (*Receiver, error) {
	r := &Receiver{handle: handle, seen: map[string]bool{}}
	for _, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil || !strings.HasPrefix(s, "whsec_") {
			return nil, fmt.Errorf("secret %d is not whsec_ and base64", len(r.secrets)+1)
		}
		r.secrets = append(r.secrets, key)
	}
	return r, nil
}

// ServeHTTP verifies, de-duplicates and handles one delivery.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	if !r.verify(id, req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature"), body) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	// One delivery per id at a time; a copy of a handled id is answered
	// 200 at once, so that giftd moves on.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[id] {
		w.WriteHeader(http.StatusOK)
		return
	}
	var e Event
	if err := json.Unmarshal(body, &e); err != nil || e.ID != id {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if err := r.handle(e); err != nil {
		http.Error(w, "not handled", http.StatusInternalServerError)
		return
	}
	r.seen[id] = true
	w.WriteHeader(http.StatusOK)
}

// verify checks the timestamp (within 5 minutes of now: an old delivery
// replayed by someone else is refused) and that one v1 signature is
// HMAC-SHA256(secret, id.timestamp.body) for one of the secrets, in
// constant time.
func (r *Receiver) verify(id, timestamp, signatures string, body []byte) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if id == "" || err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return false
	}
	for _, key := range r.secrets {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + timestamp + "."))
		m.Write(body)
		want := []byte("v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)))
		for _, sig := range strings.Fields(signatures) {
			if hmac.Equal([]byte(sig), want) {
				return true
			}
		}
	}
	return false
}
