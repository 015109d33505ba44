package ledger

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// WatchMigration watches, as Migrate does once it holds the lock, for a
// golang-migrate connection named appName waiting for the advisory lock key
// on the database at dbURL, until done reports.
func WatchMigration(dbURL string, key int64, appName string, done <-chan error, lockWait time.Duration, log *slog.Logger) error {
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		return err
	}
	l := &migrationLock{conn: conn, golangMigrateKey: key, appName: appName, release: func() { conn.Close(context.Background()) }}
	defer l.release()
	return l.watch(done, migrateConfig{lockWait: lockWait, logEvery: 300 * time.Millisecond, log: log})
}
