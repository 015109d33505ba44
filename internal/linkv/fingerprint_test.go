package linkv

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

// fingerprintByHash is Fingerprint as it was written first, through
// sha256.New: the reference. Every debit record in every database holds a
// fingerprint made so, and a replay must find the same one.
func fingerprintByHash(r Request) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, v := range []string{r.UserID, strconv.FormatInt(r.Gold, 10), r.Type, r.GiftID, r.SendNum,
		r.ReceiverID, r.VType, r.ResourceID, r.Reason} {
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write([]byte(v))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// TestFingerprint_SameAsStoredRecords: the fingerprint of a request is the
// one stored records hold, for the document's example (pinned) and for
// requests small and large (a 4 KiB reason outgrows the stack buffer). The
// pinned value was computed independently of Go (sha256 over the
// length-prefixed fields in Python).
func TestFingerprint_SameAsStoredRecords(t *testing.T) {
	doc := Request{UserID: "19718472", Gold: 5, Type: "1", GiftID: "10620", SendNum: "1",
		ReceiverID: "1431136630483329025", VType: "1", ResourceID: "16302940574638332063", Reason: docReasonText}
	const pinned = "55c8df347e9cccdbeaf2dc0e08f47f961dd9ad6cc6565f500b75d7b6750d55ac"
	if got := doc.Fingerprint(); hex.EncodeToString(got[:]) != pinned {
		t.Errorf("document example: fingerprint %x, want %s", got, pinned)
	}
	big := doc
	big.Reason = `{"x":"` + strings.Repeat("鲜", 1300) + `"}`
	for _, r := range []Request{doc, big, {}, {Gold: 1_000_000_000_000, UserID: "u", Reason: "{}"}} {
		if got, want := r.Fingerprint(), fingerprintByHash(r); got != want {
			t.Errorf("%+v: fingerprint %x, want %x", r, got, want)
		}
	}
}
