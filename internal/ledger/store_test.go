package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

// BenchmarkDebit_QueryExecModes compares debits on a direct connection in
// pgx's query modes, with group commit off and on. Besides time per debit
// it reports the CPU time per debit of the client (this process) and of
// the server (the database's backends), which hold still when other work
// shares the machine and wall time does not:
//
//	go test -run '^$' -bench QueryExecModes -benchtime 5s ./internal/ledger/
func BenchmarkDebit_QueryExecModes(b *testing.B) {
	for _, batch := range []int{1, ledger.DefaultBatching().MaxBatch} {
		for _, mode := range []string{"cache_statement", "cache_describe", "exec"} {
			b.Run(fmt.Sprintf("batch=%d/%s", batch, mode), func(b *testing.B) {
				opts := ledger.DefaultBatching()
				opts.MaxBatch = batch
				s, err := ledger.Open(context.Background(), pgtest.URL(b)+"&default_query_exec_mode="+mode, ledger.WithBatching(opts))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				const wallets = 200
				for w := range wallets {
					if _, err := s.TopUp(context.Background(), ledger.TopUp{UserID: fmt.Sprint("w", w), Amount: 1 << 40, Key: fmt.Sprint("seed", w)}); err != nil {
						b.Fatal(err)
					}
				}
				var n atomic.Int64
				run := func(pb *testing.PB) {
					for pb.Next() {
						i := n.Add(1)
						if _, err := s.Debit(context.Background(), debit(fmt.Sprint("bench-", i), fmt.Sprint("w", i%wallets), 1)); err != nil {
							b.Error(err)
							return
						}
					}
				}
				b.SetParallelism(8) // 8 × GOMAXPROCS callers, like LinkV's concurrent requests
				b.RunParallel(run)  // warm: fill the pool, so that its backends are the ones measured
				n.Store(0)
				server0, client0 := serverCPU(b, s), clientCPU()
				b.ResetTimer()
				b.RunParallel(run)
				b.StopTimer()
				server, client := serverCPU(b, s)-server0, clientCPU()-client0
				b.ReportMetric(float64(client.Microseconds())/float64(b.N), "client-cpu-µs/op")
				b.ReportMetric(float64(server.Microseconds())/float64(b.N), "server-cpu-µs/op")
			})
		}
	}
}

// clientCPU is the CPU time this process has used.
func clientCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru) //nolint:errcheck // cannot fail for RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time used so far by the backends serving s's
// database, read from /proc (the server runs on this machine).
func serverCPU(b *testing.B, s *ledger.Store) time.Duration {
	var db string
	if err := s.Pool().QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil {
		b.Fatal(err)
	}
	return databaseCPU(b, s.Pool(), db)
}

// databaseCPU is the CPU time so far of the client backends connected to
// database db of q's server (utime + stime, from /proc).
func databaseCPU(b *testing.B, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, db string) time.Duration {
	rows, err := q.Query(context.Background(),
		`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, db)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var ticks int64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Skipf("cannot read the server's CPU time: %v", err)
		}
		// Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		for _, v := range f[11:13] {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
