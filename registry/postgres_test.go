package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/streamhub/streamhub/internal/testpg"
	"github.com/streamhub/streamhub/server"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openPG(t *testing.T, db string, openPublish bool, timeout time.Duration) *Postgres {
	t.Helper()
	r, err := OpenPostgres(context.Background(), Options{Database: db, Prefix: "live", Open: openPublish, Timeout: timeout, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pgBackend(srv *testpg.Server) backend {
	return backend{
		name:  "postgres",
		newDB: func(t *testing.T) string { return srv.NewDatabase(t) },
		open: func(t *testing.T, db string, openPublish bool) Registry {
			t.Helper()
			return openPG(t, db, openPublish, 5*time.Second)
		},
		raw: func(t *testing.T, db string) string {
			t.Helper()
			ctx := context.Background()
			c, err := pgx.Connect(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var out string
			err = c.QueryRow(ctx, `SELECT coalesce(string_agg(row_to_json(s)::text, ' '), '') FROM streamhub_streams s`).Scan(&out)
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
}

// TestPostgres runs the registry's contract against a real PostgreSQL 15,
// then what only a shared database does: outages, slowness, several nodes,
// migrations and the copy from bbolt.
func TestPostgres(t *testing.T) {
	if err := testpg.Available(); err != nil {
		t.Skip("the PostgreSQL registry tests need a PostgreSQL 15:", err)
	}
	srv := testpg.Start(t)
	be := pgBackend(srv)
	runContract(t, be)
	t.Run("SharedByNodes", func(t *testing.T) { testPGSharedByNodes(t, srv) })
	t.Run("Migrations", func(t *testing.T) { testPGMigrations(t, srv) })
	t.Run("Copy", func(t *testing.T) { testPGCopy(t, srv) })
	t.Run("OpenErrors", func(t *testing.T) { testPGOpenErrors(t, srv) })
	t.Run("Watch", func(t *testing.T) { testPGWatch(t, srv) })
	// Last: they stop and pause the server.
	t.Run("SlowThenDownThenBack", func(t *testing.T) { testPGOutage(t, srv) })
}

// A key created, rotated or deleted through one node counts on the other
// at once: nothing is cached.
func testPGSharedByNodes(t *testing.T, srv *testpg.Server) {
	db := srv.NewDatabase(t)
	a, b := openPG(t, db, false, 5*time.Second), openPG(t, db, false, 5*time.Second)
	defer a.Close()
	defer b.Close()
	s, key, err := b.Create("on b")
	if err != nil {
		t.Fatal(err)
	}
	if p, _, ok, err := a.Resolve("live/"+key, ""); p != "live/"+s.ID || !ok || err != nil {
		t.Fatalf("node a resolves node b's key: %q %v %v", p, ok, err)
	}
	newKey, err := a.RotateKey(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.Resolve("live/"+key, ""); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("node b still takes the key rotated on node a: %v", err)
	}
	if ok, _ := b.KeyMatches(s.ID, newKey); !ok {
		t.Fatal("node b does not know the key rotated on node a")
	}
	if err := b.Delete(s.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.Resolve("live/"+s.ID, newKey); !errors.Is(err, ErrDeleted) {
		t.Fatalf("node a: a stream deleted on node b: %v", err)
	}
	if err := a.Delete(s.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

// Nodes starting together migrate once; a database migrated by a newer
// streamhub is refused.
func testPGMigrations(t *testing.T, srv *testpg.Server) {
	db := srv.NewDatabase(t)
	var wg sync.WaitGroup
	regs := make([]*Postgres, 4)
	errs := make([]error, 4)
	for i := range regs {
		wg.Go(func() {
			regs[i], errs[i] = OpenPostgres(context.Background(), Options{Database: db, Prefix: "live", Logger: quiet})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		defer regs[i].Close()
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n, v int
	if err := c.QueryRow(ctx, "SELECT count(*), max(version) FROM streamhub_schema_migrations").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || v != SchemaVersion() || v < 1 {
		t.Fatalf("schema_migrations: %d rows, version %d; want %d", n, v, SchemaVersion())
	}
	if _, err := c.Exec(ctx, "INSERT INTO streamhub_schema_migrations (version, name) VALUES (999, 'future')"); err != nil {
		t.Fatal(err)
	}
	_, err = OpenPostgres(ctx, Options{Database: db, Prefix: "live", Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "newer than this streamhub") {
		t.Fatalf("a newer schema: %v", err)
	}
}

// The copy from bbolt keeps ids, names, dates, key hashes and deleted ids,
// and copies nothing twice.
func testPGCopy(t *testing.T, srv *testpg.Server) {
	bolt := boltBackend.open(t, filepath.Join(t.TempDir(), "s.db"), false).(*Bolt)
	defer bolt.Close()
	s1, k1, _ := bolt.Create("one")
	s2, k2, _ := bolt.Create("two")
	gone, _, _ := bolt.Create("gone")
	if err := bolt.Delete(gone.ID); err != nil {
		t.Fatal(err)
	}
	pg := openPG(t, srv.NewDatabase(t), false, 5*time.Second)
	defer pg.Close()
	ctx := context.Background()
	rep, err := pg.Copy(ctx, bolt)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (CopyReport{Streams: 2, Deleted: 1, Copied: 2, DeletedCopied: 1}) {
		t.Fatalf("first copy: %+v", rep)
	}
	rep, err = pg.Copy(ctx, bolt)
	if err != nil || rep != (CopyReport{Streams: 2, Deleted: 1}) {
		t.Fatalf("second copy: %+v %v", rep, err)
	}
	l, err := pg.List()
	if err != nil || len(l) != 2 || l[0].ID != s1.ID || l[1].ID != s2.ID || l[0].Name != "one" || !l[1].Created.Equal(s2.Created.Truncate(time.Microsecond)) {
		t.Fatalf("after the copy: %+v %v", l, err)
	}
	for _, c := range []struct{ id, key string }{{s1.ID, k1}, {s2.ID, k2}} {
		if p, _, ok, err := pg.Resolve("live/"+c.key, ""); p != "live/"+c.id || !ok || err != nil {
			t.Fatalf("a copied key: %q %v %v", p, ok, err)
		}
	}
	if _, _, _, err := pg.Resolve("live/"+gone.ID, ""); !errors.Is(err, ErrDeleted) {
		t.Fatalf("a copied deleted stream: %v", err)
	}
}

func testPGOpenErrors(t *testing.T, srv *testpg.Server) {
	ctx := context.Background()
	// Nobody listens on the socket's neighbour directory.
	dsn := "postgres://app:secretpw@/postgres?host=" + filepath.Join(srv.Dir, "nosock") + "&port=1"
	_, err := OpenPostgres(ctx, Options{Database: dsn, Prefix: "live", Timeout: time.Second, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "streams.database") ||
		strings.Contains(err.Error(), "secretpw") {
		t.Fatalf("an unreachable database: %v", err)
	}
	if _, err := New(ctx, Options{Database: "postgres://app@/postgres?host=" + srv.Dir + "/sock&port=notaport"}); err == nil ||
		!strings.Contains(err.Error(), "streams.database") {
		t.Fatalf("a bad URL: %v", err)
	}
	if !IsPostgres("postgresql://x/y") || !IsPostgres("POSTGRES://x") || IsPostgres("streamhub.db") || IsPostgres("/var/lib/postgres.db") {
		t.Fatal("IsPostgres")
	}
}

// A database that does not answer makes the publish check fail within the
// timeout with ErrUnavailable (never a wrong key); a stopped one too; both
// recover by themselves, and Health follows.
func testPGOutage(t *testing.T, srv *testpg.Server) {
	defer srv.SetTB(t)
	srv.SetTB(t)
	old := healthEvery
	healthEvery = 100 * time.Millisecond
	defer func() { healthEvery = old }()
	db := srv.NewDatabase(t)
	r := openPG(t, db, false, 500*time.Millisecond)
	defer r.Close()
	got := make(chan string, 100)
	r.Watch(func(id string) {
		select {
		case got <- id:
		default:
		}
	})
	s, key, err := r.Create("x")
	if err != nil {
		t.Fatal(err)
	}
	check := func() error {
		p, _, _, err := r.Resolve("live/"+key, "")
		if err == nil && p != "live/"+s.ID {
			t.Fatalf("resolved to %q", p)
		}
		return err
	}
	waitHealth := func(up bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); r.Health().Up != up; {
			if time.Now().After(deadline) {
				t.Fatalf("Health stayed %+v", r.Health())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	srv.Pause()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- check() }()
	select {
	case err := <-done:
		t.Logf("the publish check on a paused database failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, server.ErrUnavailable) || errors.Is(err, ErrWrongKey) ||
			!strings.Contains(err.Error(), "did not answer") {
			t.Fatalf("a paused database: %v", err)
		}
	case <-time.After(10 * time.Second): // the bound is 500 ms: far from this
		srv.Resume()
		t.Fatal("the publish check hangs on a paused database")
	}
	waitHealth(false)
	if h := r.Health(); h.Backend != "postgres" || h.Error == "" {
		t.Fatalf("down: %+v", h)
	}
	if _, err := r.List(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("List on a paused database: %v", err)
	}
	srv.Resume()
	waitHealth(true)
	if err := check(); err != nil {
		t.Fatalf("after the pause: %v", err)
	}

	srv.Stop()
	if err := check(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a stopped database: %v", err)
	}
	waitHealth(false)
	srv.Restart()
	waitHealth(true)
	if err := check(); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	// The revocation listener is back too.
	other := openPG(t, db, false, 5*time.Second)
	defer other.Close()
	rotateUntilHeard(t, other, s.ID, got)
}

// BenchmarkResolve is the publish check of a stream key: from memory
// (bbolt) and one query (PostgreSQL over a unix socket).
func BenchmarkResolve(b *testing.B) {
	bench := func(b *testing.B, r Registry) {
		_, key, err := r.Create("bench")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, _, ok, err := r.Resolve("live/"+key, ""); !ok || err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bbolt", func(b *testing.B) {
		r, err := Open(filepath.Join(b.TempDir(), "s.db"), "live", false)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		bench(b, r)
	})
	b.Run("postgres", func(b *testing.B) {
		if err := testpg.Available(); err != nil {
			b.Skip(err)
		}
		srv := testpg.Start(b)
		r, err := OpenPostgres(context.Background(), Options{Database: srv.DSN, Prefix: "live", Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		bench(b, r)
	})
}

// rotateUntilHeard rotates id's key through b until got says a listener
// heard it (the listener connects in the background), then empties got.
func rotateUntilHeard(t *testing.T, b Registry, id string, got chan string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := b.RotateKey(id); err != nil {
			t.Fatal(err)
		}
		select {
		case heard := <-got:
			if heard != id {
				t.Fatalf("rotation: revoked %q, want %q", heard, id)
			}
			time.Sleep(100 * time.Millisecond)
			for len(got) > 0 {
				<-got
			}
			return
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("a rotation never reached the listener")
			}
		}
	}
}

// A key rotated or a stream deleted through node b reaches node a's Watch;
// a garbage payload does not.
func testPGWatch(t *testing.T, srv *testpg.Server) {
	db := srv.NewDatabase(t)
	a, b := openPG(t, db, false, 5*time.Second), openPG(t, db, false, 5*time.Second)
	defer a.Close()
	defer b.Close()
	got := make(chan string, 10)
	a.Watch(func(id string) { got <- id })
	s, _, err := b.Create("x")
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string) {
		t.Helper()
		select {
		case id := <-got:
			if id != s.ID {
				t.Fatalf("%s: revoked %q, want %q", what, id, s.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s on node b did not reach node a", what)
		}
	}
	rotateUntilHeard(t, b, s.ID, got)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, bad := range []string{"../../x", "live/abc", "", strings.Repeat("a", 14)} {
		if _, err := c.Exec(ctx, "SELECT pg_notify($1, $2)", revokedChannel, bad); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(s.ID); err != nil {
		t.Fatal(err)
	}
	wait("a delete") // and nothing of the garbage before it
}
