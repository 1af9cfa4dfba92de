//go:build e2e

package e2e

// A redis-server of the test's own: on a free loopback port, in a temp
// dir, no persistence (a restart starts empty, as a Redis that lost its
// data would), stopped at cleanup.

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// redisServer is a running (or stopped) redis-server.
type redisServer struct {
	t    *testing.T
	addr string
	dir  string
	p    *proc
}

// redisInstall says how to get redis-server.
const redisInstall = "install it with scripts/test.sh (or: sudo apt-get install -y redis-server)"

// startRedis starts a redis-server on a free port and waits until it
// answers.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found in PATH: the cluster e2e tests need it; %s", redisInstall)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &redisServer{t: t, addr: addr, dir: t.TempDir()}
	r.start()
	return r
}

// start runs redis-server on r.addr (again, after stop) and waits until it
// answers PING.
func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.p = startProc(r.t, "redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--logfile", "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := redisPing(r.addr); err == nil {
			return
		} else if r.p.exited() || time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not start: %v\n%s", r.addr, err, tail(r.p.stdout.String()+r.p.stderr.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop kills redis-server (its data is gone with it).
func (r *redisServer) stop() { r.p.kill() }

// redisPing sends an inline PING and expects +PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", buf[:n])
	}
	return nil
}

// redisGet returns key's value ("" if absent) with an inline GET.
func redisGet(addr, key string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("GET " + key + "\r\n")); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	s := string(buf[:n])
	if s == "$-1\r\n" {
		return "", nil
	}
	// $<len>\r\n<value>\r\n
	var l int
	i := 1
	for i < len(s) && s[i] != '\r' {
		i++
	}
	if l, err = strconv.Atoi(s[1:i]); err != nil || len(s) < i+2+l {
		return "", fmt.Errorf("GET answered %q", s)
	}
	return s[i+2 : i+2+l], nil
}
