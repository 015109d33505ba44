// Package migrations holds giftd's golang-migrate SQL files, embedded so the
// binary carries its own schema.
package migrations

import "embed"

// FS holds every NNNNNN_name.{up,down}.sql file of this folder: the schema of
// giftd's database, or of each partition in partitioned mode.
//
//go:embed *.sql
var FS embed.FS

// ProxyFS holds proxy/NNNNNN_name.{up,down}.sql: the PL/Proxy database in front
// of the partitions in partitioned mode (docs/scale-out.md).
//
//go:embed proxy/*.sql
var ProxyFS embed.FS

// PartitionFS holds partition/NNNNNN_name.{up,down}.sql: what each partition
// adds to FS's schema in partitioned mode, applied after it.
//
//go:embed partition/*.sql
var PartitionFS embed.FS
