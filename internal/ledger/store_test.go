package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

func TestCheckURL_SeveralHostsNeedReadWrite(t *testing.T) {
	tests := []struct {
		name, url string
		ok        bool
	}{
		{"one host", "postgres://giftd:s3cret@db1:5432/giftd", true},
		{"one host, TLS fallback", "postgres://giftd:s3cret@db1/giftd?sslmode=prefer", true},
		{"two hosts", "postgres://giftd:s3cret@db1:5432,db2:5432/giftd", false},
		{"two hosts, any", "postgres://giftd:s3cret@db1,db2/giftd?target_session_attrs=any", false},
		{"two hosts, prefer-standby", "postgres://giftd:s3cret@db1,db2/giftd?target_session_attrs=prefer-standby", false},
		{"two hosts, read-write", "postgres://giftd:s3cret@db1,db2/giftd?target_session_attrs=read-write", true},
		{"two hosts, primary", "postgres://giftd:s3cret@db1,db2/giftd?target_session_attrs=primary", true},
		{"one host two ports", "postgres://giftd:s3cret@db1:5432,db1:5433/giftd", false},
		{"keyword form", "host=db1,db2 user=giftd password=s3cret dbname=giftd", false},
		{"keyword form, read-write", "host=db1,db2 user=giftd password=s3cret dbname=giftd target_session_attrs=read-write", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ledger.CheckURL(tt.url)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckURL = %v, want ok %t", err, tt.ok)
			}
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), "target_session_attrs=read-write") {
				t.Errorf("error %q does not say what to add", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q quotes the password", err)
			}
		})
	}
}

func TestOpen_RefusesSeveralHostsWithoutReadWrite(t *testing.T) {
	_, err := ledger.Open(context.Background(), "postgres://giftd:s3cret@db1,db2/giftd")
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open = %v, want an error naming DATABASE_URL, without the password", err)
	}
}

// readOnlyStore opens a store whose every connection is read-only, as on a
// standby: pgx sends the URL's unknown parameters to the server as settings.
func readOnlyStore(t *testing.T) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), pgtest.URL(t)+"&default_transaction_read_only=on", pgtest.StoreOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// settledStat returns the pool's statistics once it has finished destroying
// connections (the pool destroys them in the background), or after a second.
func settledStat(s *ledger.Store) *pgxpool.Stat {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s.Pool().Stat().TotalConns() == 0 {
			break
		}
	}
	return s.Pool().Stat()
}

func TestReady_ReadOnlyConnectionIsNotReadyAndDropped(t *testing.T) {
	s := readOnlyStore(t)
	ctx := context.Background()
	for range 2 {
		if err := s.Ready(ctx); !errors.Is(err, ledger.ErrReadOnly) {
			t.Fatalf("Ready = %v, want ErrReadOnly", err)
		}
	}
	if st := settledStat(s); st.TotalConns() != 0 || st.NewConnsCount() != 2 {
		t.Errorf("pool holds %d connections after %d opened; want every read-only one dropped", st.TotalConns(), st.NewConnsCount())
	}
}

func TestDebit_ReadOnlyConnectionIsDropped(t *testing.T) {
	s := readOnlyStore(t)
	ctx := context.Background()
	for i := range 3 {
		_, err := s.Debit(ctx, debit(fmt.Sprint("ro-", i), "u1", 1))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
			t.Fatalf("Debit = %v, want SQLSTATE 25006", err)
		}
	}
	if st := settledStat(s); st.TotalConns() != 0 || st.NewConnsCount() != 3 {
		t.Errorf("pool holds %d connections after %d opened; want each one that met 25006 dropped", st.TotalConns(), st.NewConnsCount())
	}
}
