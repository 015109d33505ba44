package ledger

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/jackc/pgx/v5"
)

// MigrateTo moves the schema of the database at dbURL up or down to
// version, under the same lock as Migrate.
func MigrateTo(dbURL string, version uint) error {
	return withMigrate(dbURL, nil, func(m *migrate.Migrate) error {
		if err := m.Migrate(version); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		return nil
	})
}

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
