// Package migrations holds giftd's golang-migrate SQL files, embedded so the
// binary carries its own schema.
package migrations

import "embed"

// FS holds every NNNNNN_name.{up,down}.sql file of this folder.
//
//go:embed *.sql
var FS embed.FS
