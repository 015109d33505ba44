package partition

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
)

// ClusterName is the PL/Proxy cluster the proxy migrations' routing
// functions name (CLUSTER 'giftd').
const ClusterName = "giftd"

// ErrPartitionCountChanged is returned, wrapped, by Register and Migrate when
// the proxy already routes over another number of partitions: moving from
// one count to another is a resharding, never a registration, since every
// user's partition would change under it.
var ErrPartitionCountChanged = errors.New("the proxy already routes over another number of partitions")

// ErrWrongPartition is returned, wrapped, by Migrate and Register when a
// database is, by its claim (migrations/partition/000002_identity.up.sql),
// another partition than the one its URL is given for, or another cluster's.
var ErrWrongPartition = errors.New("a partition URL leads to another partition's database")

// claim is a partition database's identity: its cluster, its number and the
// number of partitions it was claimed among.
type claim struct {
	cluster               string
	partition, partitions int
}

func (c claim) String() string {
	return fmt.Sprintf("partition %d of %d of cluster %s", c.partition, c.partitions, c.cluster)
}

// A Layout is a partitioned giftd: a PL/Proxy database and 2^k partition
// databases, each a postgres:// URL as giftd reaches it.
type Layout struct {
	ProxyURL      string
	PartitionURLs []string
	// ProxyPartitionURLs, when set, are the partitions as the proxy reaches
	// them (say through a PgBouncer beside the proxy), in the same order;
	// PartitionURLs otherwise. They are what Register writes.
	ProxyPartitionURLs []string
}

// A LayoutError is Layout.Check's error: which field of the layout is
// wrong ("ProxyURL", "PartitionURLs" or "ProxyPartitionURLs") and how. It
// never quotes a URL.
type LayoutError struct {
	Field, Problem string
}

func (e *LayoutError) Error() string { return e.Field + ": " + e.Problem }

// Check returns a *LayoutError when l is not a usable layout: a missing or
// invalid URL, a partition count that is not a power of two, two partitions
// (or a partition and the proxy) on one database, or ProxyPartitionURLs of
// another length.
func (l Layout) Check() error {
	if l.ProxyURL == "" {
		return &LayoutError{"ProxyURL", "missing"}
	}
	if err := checkURL(l.ProxyURL); err != nil {
		return &LayoutError{"ProxyURL", err.Error()}
	}
	n := len(l.PartitionURLs)
	if !powerOfTwo(n) {
		return &LayoutError{"PartitionURLs", fmt.Sprintf("%d URLs: want a power of two (1, 2, 4, 8, …)", n)}
	}
	if len(l.ProxyPartitionURLs) != 0 && len(l.ProxyPartitionURLs) != n {
		return &LayoutError{"ProxyPartitionURLs", fmt.Sprintf("%d URLs for %d partitions: want one per partition, in the same order", len(l.ProxyPartitionURLs), n)}
	}
	seen := map[string]string{Where(l.ProxyURL): "the proxy"}
	for i, u := range l.PartitionURLs {
		if err := checkURL(u); err != nil {
			return &LayoutError{"PartitionURLs", fmt.Sprintf("partition %d: %v", i, err)}
		}
		if other, ok := seen[Where(u)]; ok {
			return &LayoutError{"PartitionURLs", fmt.Sprintf("partition %d is on the database of %s (%s): each partition needs a database of its own", i, other, Where(u))}
		}
		seen[Where(u)] = fmt.Sprintf("partition %d", i)
	}
	for i, u := range l.ProxyPartitionURLs {
		if err := checkURL(u); err != nil {
			return &LayoutError{"ProxyPartitionURLs", fmt.Sprintf("partition %d: %v", i, err)}
		}
	}
	return nil
}

func checkURL(u string) error {
	if _, err := ConnString(u); err != nil {
		return err
	}
	return ledger.CheckURL(u)
}

// proxyURLs are the partitions as the proxy reaches them.
func (l Layout) proxyURLs() []string {
	if len(l.ProxyPartitionURLs) != 0 {
		return l.ProxyPartitionURLs
	}
	return l.PartitionURLs
}

// Where names the database of a postgres:// URL for messages, as
// host:port/dbname (every host of a multi-host URL), without the user or
// password; "(invalid URL)" when it cannot be parsed.
func Where(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Host + u.Path
}

// ConnString turns a postgres:// URL into the libpq key=value connection
// string PL/Proxy needs: it appends " user=…" to a string without "user=",
// which would break a URL. The result holds the URL's password, if any:
// never log it. Its error never quotes the URL.
func ConnString(databaseURL string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Opaque != "" {
		return "", errors.New("not a postgres:// URL")
	}
	var kv []string
	add := func(k, v string) { kv = append(kv, k+"="+quote(v)) }
	if u.Host != "" {
		var hosts, ports []string
		anyPort := false
		for _, hp := range strings.Split(u.Host, ",") {
			host, port, err := net.SplitHostPort(hp)
			if err != nil { // no port
				host, port = strings.Trim(hp, "[]"), ""
			}
			anyPort = anyPort || port != ""
			hosts, ports = append(hosts, host), append(ports, port)
		}
		add("host", strings.Join(hosts, ","))
		if anyPort {
			for i, p := range ports {
				if p == "" {
					ports[i] = "5432"
				}
			}
			add("port", strings.Join(ports, ","))
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		add("dbname", db)
	}
	if u.User != nil {
		if name := u.User.Username(); name != "" {
			add("user", name)
		}
		if pw, ok := u.User.Password(); ok {
			add("password", pw)
		}
	}
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, "pool_") || k == "default_query_exec_mode" || k == "statement_cache_capacity" ||
			k == "description_cache_capacity" {
			continue // pgx's own settings, unknown to libpq
		}
		if !validKey(k) {
			return "", errors.New("a query parameter of the URL is not a libpq setting name")
		}
		add(k, q.Get(k))
	}
	return strings.Join(kv, " "), nil
}

// quote quotes v as a libpq connection string value.
func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Register writes the partitions' connection strings (ConnString of each of
// partitionURLs, in partition order) into the proxy's cluster table, in one
// transaction, and moves the cluster's version on so that PL/Proxy reloads
// them; an unchanged table is left alone. Before it commits, it asks through
// the proxy, at every partition number i, which partition the database
// reached there claims to be (giftd_partition_identity), and rolls back
// unless it is partition i of this cluster's count: URLs out of order, or
// another cluster's database, are refused with ErrWrongPartition. It returns
// an error wrapping ErrPartitionCountChanged when the proxy already has
// another number of partitions. Its errors never quote a connection string.
func Register(ctx context.Context, proxyURL string, partitionURLs []string) error {
	return register(ctx, proxyURL, partitionURLs, false)
}

// register is Register; with doubling, it also takes over a proxy that
// routes over half as many partitions (giftd reshard's switch), in the same
// one transaction and with the same check of every claim.
func register(ctx context.Context, proxyURL string, partitionURLs []string, doubling bool) error {
	if !powerOfTwo(len(partitionURLs)) {
		return fmt.Errorf("register partitions: %d: want a power of two", len(partitionURLs))
	}
	want := make([]string, len(partitionURLs))
	for i, u := range partitionURLs {
		cs, err := ConnString(u)
		if err != nil {
			return fmt.Errorf("register partition %d: %w", i, err)
		}
		want[i] = cs
	}
	conn, err := pgx.Connect(ctx, proxyURL)
	if err != nil {
		return fmt.Errorf("register partitions: connect to the proxy %s: %w", Where(proxyURL), err)
	}
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// One registration at a time: two giftd migrate runs must not
		// interleave their rows.
		if _, err := tx.Exec(ctx, `LOCK TABLE giftd_partitions IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT connstr FROM giftd_partitions ORDER BY partition`)
		if err != nil {
			return err
		}
		have, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if slices.Equal(have, want) {
			return nil
		}
		if len(have) != 0 && len(have) != len(want) && !(doubling && 2*len(have) == len(want)) {
			return fmt.Errorf("%w (%d registered, %d given): that is giftd reshard's (docs/scale-out.md)",
				ErrPartitionCountChanged, len(have), len(want))
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO giftd_partitions AS p (partition, connstr)
			SELECT n - 1, c FROM unnest($1::text[]) WITH ORDINALITY AS t (c, n)
			ON CONFLICT (partition) DO UPDATE SET connstr = excluded.connstr, updated_at = now()
			WHERE p.connstr IS DISTINCT FROM excluded.connstr`, want)
		if err != nil {
			return err
		}
		// PL/Proxy reads the cluster in this transaction, so it routes by
		// the rows just written; a mismatch rolls them back. (This
		// connection's PL/Proxy would keep them cached: it is closed below.)
		var cluster string
		if err := tx.QueryRow(ctx, `SELECT cluster_id::text FROM giftd_cluster`).Scan(&cluster); err != nil {
			return err
		}
		for i := range want {
			var got claim
			err := tx.QueryRow(ctx, `SELECT cluster_id::text, partition, partitions FROM giftd_partition_identity($1)`, i).
				Scan(&got.cluster, &got.partition, &got.partitions)
			if err != nil {
				return fmt.Errorf("ask partition %d (%s) through the proxy which partition it is: %w", i, Where(partitionURLs[i]), err)
			}
			if expect := (claim{cluster, i, len(want)}); got != expect {
				return fmt.Errorf("%w: the proxy reaches %s as %s, but it is %s",
					ErrWrongPartition, Where(partitionURLs[i]), expect, got)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("register partitions on the proxy %s: %w", Where(proxyURL), err)
	}
	return nil
}

// A DatabaseVersion is where one migration set of a partitioned giftd
// stands on one database.
type DatabaseVersion struct {
	// Role is "partition N" or "proxy"; Where the database (see Where);
	// Set the migration set.
	Role, Where string
	Set         ledger.MigrationSet
	Version     uint
	Dirty       bool
}

// Migrate migrates a partitioned giftd: the proxy with
// ledger.ProxyMigrations; every partition with giftd's migrations
// (ledger.MainMigrations, then ledger.PartitionMigrations), claiming it as
// partition i of this cluster the first time and refusing it with
// ErrWrongPartition when it is claimed as another; then registers the
// partitions on the proxy (Register, which checks the proxy's routing before
// it commits). opts are ledger.Migrate's (the lock wait, the log); a
// ledger.WithMigrationSet among them is overridden. It stops at the first
// error, which names the database (never a password); running it again
// carries on from there.
func Migrate(ctx context.Context, l Layout, opts ...ledger.MigrateOption) error {
	if err := l.Check(); err != nil {
		return err
	}
	if err := ledger.Migrate(l.ProxyURL, withSet(opts, ledger.ProxyMigrations())...); err != nil {
		return fmt.Errorf("proxy (%s), proxy migrations: %w", Where(l.ProxyURL), err)
	}
	if err := join(ctx, l); err != nil {
		return err
	}
	cluster, err := clusterID(ctx, l.ProxyURL)
	if err != nil {
		return err
	}
	for i, u := range l.PartitionURLs {
		for _, set := range []ledger.MigrationSet{ledger.MainMigrations(), ledger.PartitionMigrations()} {
			if err := ledger.Migrate(u, withSet(opts, set)...); err != nil {
				return fmt.Errorf("partition %d (%s), %s migrations: %w", i, Where(u), set, err)
			}
		}
		if err := claimPartition(ctx, u, claim{cluster, i, len(l.PartitionURLs)}); err != nil {
			return err
		}
	}
	return Register(ctx, l.ProxyURL, l.proxyURLs())
}

// join puts a new proxy in front of a running cluster
// (docs/scale-out.md#more-than-one-proxy): a proxy with no partition
// registered yet takes the cluster id that its partitions claim, but only
// when every partition of l is claimed, by one cluster, as its place in l
// of len(l.PartitionURLs) partitions. Otherwise it changes nothing, and
// the claims that Migrate checks next refuse a layout that mixes clusters
// or orders; an unclaimed database among claimed ones is never claimed
// under an id taken from the others.
func join(ctx context.Context, l Layout) error {
	var cluster string
	for i, u := range l.PartitionURLs {
		c, claimed, err := claimOf(ctx, u)
		if err != nil {
			return fmt.Errorf("partition %d: %w", i, err)
		}
		if !claimed || c.partition != i || c.partitions != len(l.PartitionURLs) || (i > 0 && c.cluster != cluster) {
			return nil
		}
		cluster = c.cluster
	}
	conn, err := pgx.Connect(ctx, l.ProxyURL)
	if err != nil {
		return fmt.Errorf("connect to the proxy %s: %w", Where(l.ProxyURL), err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `UPDATE giftd_cluster SET cluster_id = $1
		WHERE cluster_id <> $1 AND NOT EXISTS (SELECT FROM giftd_partitions)`, cluster)
	if err != nil {
		return fmt.Errorf("the proxy %s: join cluster %s: %w", Where(l.ProxyURL), cluster, err)
	}
	return nil
}

// claimOf reads the claim of the database of partitionURL without making
// one: claimed is false for a database never claimed, or not migrated yet.
func claimOf(ctx context.Context, partitionURL string) (c claim, claimed bool, err error) {
	conn, err := pgx.Connect(ctx, partitionURL)
	if err != nil {
		return c, false, fmt.Errorf("connect to %s: %w", Where(partitionURL), err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, `SELECT cluster_id::text, partition, partitions FROM giftd_partition_identity`).
		Scan(&c.cluster, &c.partition, &c.partitions)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pgErr) && pgErr.Code == "42P01":
		return c, false, nil
	case err != nil:
		return c, false, fmt.Errorf("read the claim of %s: %w", Where(partitionURL), err)
	}
	return c, true, nil
}

// clusterID reads the proxy's cluster id.
func clusterID(ctx context.Context, proxyURL string) (string, error) {
	conn, err := pgx.Connect(ctx, proxyURL)
	if err != nil {
		return "", fmt.Errorf("connect to the proxy %s: %w", Where(proxyURL), err)
	}
	defer conn.Close(context.Background())
	var id string
	if err := conn.QueryRow(ctx, `SELECT cluster_id::text FROM giftd_cluster`).Scan(&id); err != nil {
		return "", fmt.Errorf("read the cluster id on the proxy %s: %w", Where(proxyURL), err)
	}
	return id, nil
}

// claimPartition claims the database of partitionURL as want unless it is
// claimed already, and returns an error wrapping ErrWrongPartition when its
// claim is another.
func claimPartition(ctx context.Context, partitionURL string, want claim) error {
	conn, err := pgx.Connect(ctx, partitionURL)
	if err != nil {
		return fmt.Errorf("partition %d: connect to %s: %w", want.partition, Where(partitionURL), err)
	}
	defer conn.Close(context.Background())
	var got claim
	err = conn.QueryRow(ctx, `SELECT cluster_id::text, partition, partitions FROM giftd_claim_partition($1, $2, $3)`,
		want.cluster, want.partition, want.partitions).Scan(&got.cluster, &got.partition, &got.partitions)
	if err != nil {
		return fmt.Errorf("partition %d: claim %s: %w", want.partition, Where(partitionURL), err)
	}
	switch {
	case got.cluster != want.cluster:
		return fmt.Errorf("%w: %s is given as %s, but it is %s: a partition serves one cluster",
			ErrWrongPartition, Where(partitionURL), want, got)
	case got != want:
		return fmt.Errorf("%w: %s is given as %s, but it is %s; check the order of the partition URLs",
			ErrWrongPartition, Where(partitionURL), want, got)
	}
	return nil
}

// Versions reports every migration set's version on every database of l,
// partitions first.
func Versions(l Layout, opts ...ledger.MigrateOption) ([]DatabaseVersion, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	var out []DatabaseVersion
	get := func(role, u string, set ledger.MigrationSet) error {
		v, dirty, err := ledger.MigrationVersion(u, withSet(opts, set)...)
		if err != nil {
			return fmt.Errorf("%s (%s), %s migrations: %w", role, Where(u), set, err)
		}
		out = append(out, DatabaseVersion{Role: role, Where: Where(u), Set: set, Version: v, Dirty: dirty})
		return nil
	}
	for i, u := range l.PartitionURLs {
		for _, set := range []ledger.MigrationSet{ledger.MainMigrations(), ledger.PartitionMigrations()} {
			if err := get(fmt.Sprintf("partition %d", i), u, set); err != nil {
				return nil, err
			}
		}
	}
	if err := get("proxy", l.ProxyURL, ledger.ProxyMigrations()); err != nil {
		return nil, err
	}
	return out, nil
}

// withSet is opts, copied, with set last.
func withSet(opts []ledger.MigrateOption, set ledger.MigrationSet) []ledger.MigrateOption {
	return append(slices.Clone(opts), ledger.WithMigrationSet(set))
}

// Routed returns how many partitions the proxy of proxyURL routes over
// (registered in its cluster table), 0 when none are, or its proxy
// migrations have not run yet.
func Routed(ctx context.Context, proxyURL string) (int, error) {
	n, err := registeredCount(ctx, proxyURL)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return 0, nil
	}
	return n, err
}

// First is l with its first n partitions only (n at most their count): the
// cluster the proxy routes over when l lists more, the partitions a coming
// giftd reshard adds.
func (l Layout) First(n int) Layout {
	out := Layout{ProxyURL: l.ProxyURL, PartitionURLs: l.PartitionURLs[:n:n]}
	if len(l.ProxyPartitionURLs) != 0 {
		out.ProxyPartitionURLs = l.ProxyPartitionURLs[:n:n]
	}
	return out
}
