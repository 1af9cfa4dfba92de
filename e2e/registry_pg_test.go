//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startNodeOn starts a streamhub whose streams.database is db (a
// PostgreSQL URL or a bbolt file).
func startNodeOn(t *testing.T, db string) *streamhub {
	t.Helper()
	a := freeAddrs(t).Dynamic()
	a.Database = db
	s, err := launchServer(t, writeConfigFor(t, a, ""), a)
	if err != nil {
		t.Fatalf("server on %s did not start: %v\nlog:\n%s", db, err, tail(s.stderr.String(), 40))
	}
	return s
}

// registryHealth returns the node's registry health from /api/v1/info and
// whether /metrics says streamhub_registry_up{backend="postgres"} 1.
func registryHealth(t *testing.T, s *streamhub) (up bool, why string, metricUp bool) {
	t.Helper()
	var info struct {
		Registry struct {
			Backend string
			Up      bool
			Error   string
		}
	}
	if code := apiDo(t, "GET", "http://"+s.httpAddr+"/api/v1/info", "", "", &info); code != 200 || info.Registry.Backend != "postgres" {
		t.Fatalf("info: %d %+v", code, info)
	}
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(b)
	if !strings.Contains(m, `streamhub_registry_up{backend="postgres"}`) {
		t.Fatal("/metrics has no streamhub_registry_up")
	}
	return info.Registry.Up, info.Registry.Error, strings.Contains(m, `streamhub_registry_up{backend="postgres"} 1`)
}

// Two nodes on one PostgreSQL: a key created through node B's API
// publishes (ffmpeg, RTMP) on node A, at the stream's id; rotated through
// B, it is kicked and refused on A. PostgreSQL stuck: A refuses a publisher
// after the query timeout. PostgreSQL stopped: A refuses a publisher with the reason, says so in the API and
// /metrics; started again: A publishes again without a restart.
func TestPostgresRegistryTwoNodes(t *testing.T) {
	pg := startPostgresServer(t)
	a, b := startNodeOn(t, pg.DSN), startNodeOn(t, pg.DSN)

	var c apiCreated
	if code := apiDo(t, "POST", "http://"+b.httpAddr+"/api/v1/streams", "", `{"name":"made on b"}`, &c); code != 201 {
		t.Fatalf("create on b: %d", code)
	}
	var st apiStream
	if code := apiDo(t, "GET", "http://"+a.httpAddr+"/api/v1/streams/"+c.ID, "", "", &st); code != 200 || st.ID != c.ID {
		t.Fatalf("node a does not list node b's stream: %d %+v", code, st)
	}
	pub := startPublisher(t, a.rtmpURL("live/"+c.Key))
	waitLiveURL(t, a.flvURL(c.Path), c.Path, pub)

	// The key rotated through node B: node A kicks its publisher (NOTIFY),
	// and the old key is refused on A.
	oldKey := c.Key
	if code := apiDo(t, "POST", "http://"+b.httpAddr+"/api/v1/streams/"+c.ID+"/rotate-key", oldKey, "", &c); code != 200 || c.Key == oldKey {
		t.Fatalf("rotate on b: %d", code)
	}
	waitUntil(t, 10*time.Second, "node a kicks the publisher of the key rotated on node b", pub.exited)
	a.waitLog(t, 5*time.Second, "stream key revoked on another node: publisher kicked")
	if _, stderr, code := run(t, 20*time.Second, "ffmpeg", publisherArgs(a.rtmpURL("live/"+oldKey), "-t", "3")...); code == 0 {
		t.Fatalf("the rotated key still publishes on node a:\n%s", tail(stderr, 10))
	}
	if up, why, mup := registryHealth(t, a); !up || !mup {
		t.Fatalf("node a's registry while PostgreSQL runs: up %v (%s), metric up %v", up, why, mup)
	}

	// PostgreSQL stuck (SIGSTOP: connections open, no answer): the
	// publisher is refused after streams.databaseTimeout (2 s), not held.
	pg.Pause()
	start := time.Now()
	_, stderr, code := run(t, 20*time.Second, "ffmpeg", publisherArgs(a.rtmpURL("live/"+c.Key), "-t", "5")...)
	took := time.Since(start)
	pg.Resume()
	if code == 0 {
		t.Fatalf("published with PostgreSQL stuck; ffmpeg said:\n%s", tail(stderr, 10))
	}
	a.waitLog(t, 5*time.Second, "did not answer a publish check within 2s")
	t.Logf("a publisher with PostgreSQL stuck was refused after %s", took.Round(10*time.Millisecond))
	waitUntil(t, 15*time.Second, "node a says PostgreSQL is up after the pause", func() bool {
		up, _, mup := registryHealth(t, a)
		return up && mup
	})

	pg.Stop()
	_, stderr, code = run(t, 20*time.Second, "ffmpeg", publisherArgs(a.rtmpURL("live/"+c.Key), "-t", "5")...)
	if code == 0 {
		t.Fatalf("published with PostgreSQL down; ffmpeg said:\n%s", tail(stderr, 10))
	}
	waitUntil(t, 15*time.Second, "node a says PostgreSQL is down", func() bool {
		up, _, mup := registryHealth(t, a)
		return !up && !mup
	})
	if _, why, _ := registryHealth(t, a); why == "" {
		t.Fatal("node a's registry is down without a reason")
	}
	var fail struct{ Error string }
	if code := apiDo(t, "POST", "http://"+b.httpAddr+"/api/v1/streams", "", `{"name":"x"}`, &fail); code != http.StatusServiceUnavailable {
		t.Fatalf("create with PostgreSQL down: %d %s", code, fail.Error)
	}

	pg.Restart()
	waitUntil(t, 15*time.Second, "node a says PostgreSQL is up again", func() bool {
		up, _, mup := registryHealth(t, a)
		return up && mup
	})
	pub = startPublisher(t, a.rtmpURL("live/"+c.Key))
	waitLiveURL(t, a.flvURL(c.Path), c.Path, pub)
}

// streamhub registry migrate moves a node's bbolt file into PostgreSQL:
// counts, idempotent, and the keys publish on a node of PostgreSQL; a
// deleted stream's path stays closed.
func TestPostgresRegistryMigrate(t *testing.T) {
	pg := startPostgresServer(t)
	dsn := pg.NewDatabase(t)
	old := startServer(t, "")
	api := "http://" + old.httpAddr + "/api/v1"
	var keep, gone apiCreated
	apiDo(t, "POST", api+"/streams", "", `{"name":"kept"}`, &keep)
	apiDo(t, "POST", api+"/streams", "", `{"name":"gone"}`, &gone)
	if keep.Key == "" || gone.Key == "" {
		t.Fatal("streams not created")
	}
	if code := apiDo(t, "DELETE", api+"/streams/"+gone.ID, "", "", nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	old.stop(t) // the file is locked while its server runs
	file := old.addrs.Database

	out, stderr, code := run(t, 30*time.Second, binPath, "registry", "migrate", "--from", file, "--to", dsn)
	if code != 0 || !strings.Contains(out, "streams: 1 in "+file+", 1 copied, 0 already in PostgreSQL") ||
		!strings.Contains(out, "deleted streams: 1 in "+file+", 1 copied") {
		t.Fatalf("migrate: %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = run(t, 30*time.Second, binPath, "registry", "migrate", "--from", file, "--to", dsn)
	if code != 0 || !strings.Contains(out, "streams: 1 in "+file+", 0 copied, 1 already in PostgreSQL") {
		t.Fatalf("migrate again: %d\n%s%s", code, out, stderr)
	}

	n := startNodeOn(t, dsn)
	pub := startPublisher(t, n.rtmpURL("live/"+keep.Key))
	waitLiveURL(t, n.flvURL(keep.Path), keep.Path, pub)
	_, stderr, code = run(t, 20*time.Second, "ffmpeg", publisherArgs(n.rtmpURL(gone.Path), "-t", "3")...)
	if code == 0 {
		t.Fatalf("published on a deleted stream's path after the migration:\n%s", tail(stderr, 10))
	}
}
