// Package partition is giftd's partitioned mode (docs/scale-out.md): where a
// user's wallet lives among 2^k partition databases behind a PL/Proxy
// database, and the migration of such a cluster.
//
// Its SQL is the proxy database's (the cluster and its registration) and,
// on a partition, only the identity claim of partitioned mode: a
// partition's wallets, ledger and everything else it holds are
// internal/ledger's.
package partition

import (
	"crypto/sha256"
	"encoding/binary"
)

// Placement is giftd_placement(userID) of the proxy migrations: the first 4
// bytes of the SHA-256 of userID's bytes (UTF-8, as PostgreSQL's
// convert_to(user_id, 'UTF8') gives them for a valid text), read big-endian
// as a signed 32-bit integer.
func Placement(userID string) int32 {
	sum := sha256.Sum256([]byte(userID))
	return int32(binary.BigEndian.Uint32(sum[:4]))
}

// For is the partition that owns userID in a cluster of n partitions, n a
// power of two: Placement(userID) & (n − 1), as PL/Proxy's RUN ON computes
// it. It panics when n is not a power of two, which Layout.Check refuses
// first.
func For(userID string, n int) int {
	if !powerOfTwo(n) {
		panic("partition.For: the partition count must be a power of two")
	}
	return int(uint32(Placement(userID)) & uint32(n-1))
}

func powerOfTwo(n int) bool { return n > 0 && n&(n-1) == 0 }
