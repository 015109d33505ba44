package ledger

import "strings"

// MaxAmount is the largest amount of gold one debit, top-up or reversal may
// move: 10^12 coins, far above any real gift and far below int64's limit, so
// that sums over many entries cannot overflow.
const MaxAmount = 1_000_000_000_000

// ValidUserID reports whether id is a wallet's user id: LinkV's userId rule,
// 1-64 bytes of [0-9A-Za-z+=_-], which every platform's ids must follow to
// share the wallets.
func ValidUserID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("+=_-", c) >= 0) {
			return false
		}
	}
	return true
}
