package rtsp

import (
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/server"
)

// A connection that sends nothing, or half a request, is closed after
// readTimeout (gortsplib alone waited forever for the first bytes and 60 s
// for the rest of a request).
func TestIdleAndPartialConnectionsClosed(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, server.HubConfig{}, func(c *Config) { c.ReadTimeout = time.Second })
	for _, tc := range []struct{ name, first, send string }{
		{"nothing", "", ""},
		{"half a request", "", "OPTIONS rtsp://x/live/a RTSP/1.0\r\nCSeq: 1\r\n"},
		{"a request, then half of the next", "OPTIONS rtsp://x/live/a RTSP/1.0\r\nCSeq: 1\r\n\r\n", "DESCRIBE rtsp://x/live/a RTSP/1.0\r\n"},
		{"a request, then nothing", "OPTIONS rtsp://x/live/a RTSP/1.0\r\nCSeq: 1\r\n\r\n", ""},
	} {
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		if tc.first != "" {
			io.WriteString(nc, tc.first)
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := nc.Read(make([]byte, 512)); err != nil {
				t.Fatalf("%s: no answer to the first request: %v", tc.name, err)
			}
		}
		start := time.Now()
		io.WriteString(nc, tc.send)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, nc)
		took := time.Since(start)
		nc.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: still open after %s", tc.name, took.Round(time.Millisecond))
			continue
		}
		t.Logf("%s: closed by the server after %s", tc.name, took.Round(time.Millisecond))
	}
}

// SETUP with a Transport that cannot work is refused with 461 and a
// reason, not accepted.
func TestImpossibleTransportRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/tr"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/tr")
	for _, tr := range []string{
		"RTP/AVP/TCP;unicast;interleaved=255-256",
		"RTP/AVP;unicast;client_port=0-1",
		"RTP/AVP;unicast;client_port=70000-70001",
		"RTP/AVP;unicast;client_port=5001-5000",
		"RTP/AVP/TCP;unicast;interleaved=9-8",
	} {
		line := rawRequest(t, e.addr, "SETUP rtsp://"+e.addr+"/live/tr/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: "+tr+"\r\n\r\n")
		if !strings.Contains(line, " 461 ") && !strings.Contains(line, " 400 ") {
			t.Errorf("SETUP with %s: %q, want 461 (or 400)", tr, line)
		}
	}
	if line := rawRequest(t, e.addr, "SETUP rtsp://"+e.addr+"/live/tr/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"); !strings.Contains(line, "200") {
		t.Errorf("a good SETUP: %q, want 200", line)
	}
}

// Wrong RTSP passwords are answered after the refusal delay, logged, and
// spend the address's failure budget: past it the right password is
// refused too.
func TestPasswordGuessingThrottled(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, server.HubConfig{
		PathConfig: func(string) server.PathConfig {
			pc := server.DefaultPathConfig()
			pc.ReadKey = "readsecret"
			return pc
		},
		AuthFailures: guard.NewBudget(3, time.Minute),
	}, nil)
	if _, err := startPublish(t, e.url("live/pw"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/pw")
	describe := func(password string) string {
		auth := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+password)) + "\r\n"
		return rawRequest(t, e.addr, "DESCRIBE rtsp://"+e.addr+"/live/pw RTSP/1.0\r\nCSeq: 1\r\n"+auth+"\r\n")
	}
	for i := range 3 {
		start := time.Now()
		if line := describe("guess"); !strings.Contains(line, "401") {
			t.Fatalf("wrong password %d: %q, want 401", i, line)
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("wrong password %d answered after %s, want at least the 100 ms refusal delay", i, d)
		}
	}
	if line := describe("readsecret"); strings.Contains(line, "200") {
		t.Errorf("the right password past the budget: %q, want a refusal", line)
	}
	for range 8 {
		describe("guess")
	}
	// 12 refusals of two kinds (wrong password, then throttled) from one
	// address in one window: at most 5 lines of each.
	if n := strings.Count(e.logs.String(), "msg=refused"); n < 2 || n > 10 {
		t.Errorf("%d log lines for 12 refusals from one address in one window, want 2 to 10", n)
	}
}

// A panic in one player's session ends that session only: the server
// answers, another player of another path goes on, the panic is counted.
func TestPanicEndsOneSession(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{"live/ok", "live/boom"} {
		if _, err := startPublish(t, e.url(p), publishOpts{speed: 1}); err != nil {
			t.Fatal(err)
		}
		waitPublished(t, e, p)
	}
	hook := func(path string) {
		if path == "live/boom" {
			panic("injected")
		}
	}
	testHookPlay.Store(&hook)
	t.Cleanup(func() { testHookPlay.Store(nil) })
	before := guard.Panics()
	ok := newCountingPlayer(t, e.url("live/ok"), gortsplib.ProtocolTCP, "video", "audio")
	newCountingPlayer(t, e.url("live/boom"), gortsplib.ProtocolTCP, "video", "audio")
	time.Sleep(time.Second)
	if guard.Panics() == before {
		t.Fatal("the injected panic was not counted")
	}
	n := ok.count("video")
	time.Sleep(time.Second)
	if ok.count("video") <= n {
		t.Fatal("the other player stopped after the panic")
	}
	if line := rawRequest(t, e.addr, "OPTIONS rtsp://"+e.addr+"/live/ok RTSP/1.0\r\nCSeq: 1\r\n\r\n"); !strings.Contains(line, "200") {
		t.Fatalf("the server does not answer after a panic: %q", line)
	}
	if !strings.Contains(e.logs.String(), "rtsp play loop") {
		t.Error("the panic is not in the log")
	}
}

// A request whose Content-Length is not a number, or too large, gets a 400
// saying so (gortsplib alone closed the connection without a word).
func TestBadContentLengthAnswered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, cl := range []string{"-5", "abc", "99999999999"} {
		line := rawRequest(t, e.addr, "ANNOUNCE rtsp://"+e.addr+"/live/cl RTSP/1.0\r\nCSeq: 7\r\nContent-Length: "+cl+"\r\n\r\n")
		if !strings.Contains(line, " 400 ") {
			t.Errorf("Content-Length: %s: %q, want 400", cl, line)
		}
	}
	if line := rawRequest(t, e.addr, "OPTIONS rtsp://"+e.addr+"/live/cl RTSP/1.0\r\nCSeq: 1\r\n\r\n"); !strings.Contains(line, " 200 ") {
		t.Errorf("the server does not answer after bad requests: %q", line)
	}
}
