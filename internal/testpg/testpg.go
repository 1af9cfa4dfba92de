// Package testpg starts a throwaway PostgreSQL 15 for tests: Debian's
// binaries (/usr/lib/postgresql/15/bin, package postgresql), a fresh
// cluster in a temporary directory, listening on a free loopback port and
// on a unix socket in that directory, fsync off, stopped and removed when
// the test ends. PostgreSQL refuses to run as root: when the test runs as
// root, the cluster runs as the postgres user the package creates.
//
//	srv := testpg.Start(t)          // or testpg.Start(t).DSN
//	db := srv.NewDatabase(t)        // a database of its own
//	srv.Stop(); srv.Restart()       // an outage and its end
//	srv.Pause(); srv.Resume()       // a database that does not answer
package testpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bin is where Debian installs PostgreSQL 15's server programs; another
// major version's (/usr/lib/postgresql/N/bin) is used when 15 is missing
// (a newer Debian's postgresql package).
var Bin = func() string {
	const want = "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(filepath.Join(want, "initdb")); err == nil {
		return want
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		return filepath.Dir(m[len(m)-1])
	}
	return want
}()

// Available says why PostgreSQL cannot be started here, or nil.
func Available() error {
	if _, err := os.Stat(filepath.Join(Bin, "initdb")); err != nil {
		return fmt.Errorf("no PostgreSQL in %s: install the postgresql package (scripts/test.sh does)", Bin)
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return errors.New("PostgreSQL refuses to run as root and there is no postgres user: install the postgresql package (scripts/test.sh does)")
		}
	}
	return nil
}

// Server is a running throwaway PostgreSQL.
type Server struct {
	// DSN connects over the unix socket as the superuser "app" to the
	// database "postgres" (no password: trust).
	DSN string
	// TCPDSN is the same over 127.0.0.1:Port.
	TCPDSN string
	// Port is the loopback TCP port (also the socket's number).
	Port int
	// Dir holds the cluster (data/), its socket (sock/) and log (log).
	Dir string

	tb   testing.TB
	cred *syscall.Credential // nil: run as ourselves

	mu   sync.Mutex // mu guards cmd
	cmd  *exec.Cmd
	dbs  atomic.Int32
	exit chan struct{}
}

// Start initializes and starts a cluster; the test fails (never skips)
// when it cannot.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if err := Available(); err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "streamhub-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{Dir: dir, tb: tb}
	tb.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	if err := os.Mkdir(filepath.Join(dir, "sock"), 0o700); err != nil {
		tb.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, _ := user.Lookup("postgres")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, d := range []string{dir, filepath.Join(dir, "sock")} {
			if err := os.Chown(d, uid, gid); err != nil {
				tb.Fatal(err)
			}
		}
	}
	initdb := s.command(filepath.Join(Bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "app", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.DSN = s.dsn("postgres")
	s.TCPDSN = fmt.Sprintf("postgres://app@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	s.Restart()
	return s
}

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("postgres://app@/%s?host=%s&port=%d&sslmode=disable", db, url.QueryEscape(filepath.Join(s.Dir, "sock")), s.Port)
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Dir = s.Dir
	c.Env = append(os.Environ(), "LC_ALL=C")
	// Its own process group: a ^C to the test is not a fast shutdown.
	c.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	return c
}

// Restart starts the server again after Stop (Start starts it the first
// time) on the same port and data, and waits until it accepts queries.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.tb.Fatal("testpg: Restart of a running server")
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.tb.Fatal(err)
	}
	defer logf.Close()
	c := s.command(filepath.Join(Bin, "postgres"), "-D", filepath.Join(s.Dir, "data"), "-k", filepath.Join(s.Dir, "sock"),
		"-p", strconv.Itoa(s.Port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "synchronous_commit=off", "-c", "max_connections=100", "-c", "shared_buffers=16MB")
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		s.tb.Fatal(err)
	}
	s.cmd, s.exit = c, make(chan struct{})
	exit := s.exit
	go func() { c.Wait(); close(exit) }() //nolint:errcheck // a stopped server exits non-zero
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.DSN)
		if err == nil {
			conn.Close(ctx)
			cancel()
			return
		}
		cancel()
		select {
		case <-exit:
			s.tb.Fatalf("postgres exited at start: %s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("postgres did not accept connections within 30 s: %v\n%s", err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (a fast shutdown: sessions are ended) and waits
// for it to exit. A stopped server stays stopped.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.signalAll(syscall.SIGCONT)         // a paused server cannot shut down
	s.cmd.Process.Signal(syscall.SIGINT) //nolint:errcheck // gone already
	select {
	case <-s.exit:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill() //nolint:errcheck // gone already
		<-s.exit
	}
	s.cmd = nil
}

// Pause stops every process of the server (SIGSTOP) without closing a
// connection: a database that does not answer. Resume continues them.
func (s *Server) Pause() { s.mu.Lock(); s.signalAll(syscall.SIGSTOP); s.mu.Unlock() }

// Resume continues a paused server.
func (s *Server) Resume() { s.mu.Lock(); s.signalAll(syscall.SIGCONT); s.mu.Unlock() }

// signalAll signals the postmaster and its children (each backend makes
// a session of its own, so one signal to the group does not reach them);
// s.mu must be held.
func (s *Server) signalAll(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	if sig == syscall.SIGSTOP {
		syscall.Kill(pid, sig) //nolint:errcheck // gone already: stop the parent first, so it forks no one new
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		rest := string(b[bytes.LastIndexByte(b, ')')+1:])
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			syscall.Kill(child, sig) //nolint:errcheck // gone already
		}
	}
	if sig != syscall.SIGSTOP {
		syscall.Kill(pid, sig) //nolint:errcheck // gone already
	}
}

// Log returns the server's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "log"))
	return string(b)
}

// NewDatabase creates an empty database and returns its DSN (over the
// unix socket), so tests sharing a server do not see each other's tables.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	return s.dsn(name)
}

// SetTB makes failures of Restart report to tb (a test sharing a server
// that another test or TestMain started).
func (s *Server) SetTB(tb testing.TB) { s.tb = tb }
