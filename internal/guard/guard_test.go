package guard

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRecover(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	before := Panics()
	Go(log, "test session", func() {
		var m map[string]int
		m["x"] = 1 // panics
	}, "remote", "1.2.3.4:5")
	for deadline := time.Now().Add(5 * time.Second); Panics() == before && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // the log line follows the count
	if got := Panics() - before; got != 1 {
		t.Fatalf("Panics grew by %d, want 1", got)
	}
	out := buf.String()
	for _, want := range []string{"test session", "assignment to entry in nil map", "remote=1.2.3.4:5", "guard_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestRecoverErr(t *testing.T) {
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	f := func() (err error) {
		defer RecoverErr(log, "callback", &err)
		panic("boom")
	}
	if err := f(); !errors.Is(err, ErrPanic) {
		t.Fatalf("err = %v, want ErrPanic", err)
	}
	g := func() (err error) {
		defer RecoverErr(log, "callback", &err)
		return errors.New("plain")
	}
	if err := g(); err == nil || err.Error() != "plain" {
		t.Fatalf("a call without panic changed its error: %v", err)
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("short"); got != "short" {
		t.Fatalf("Truncate(short) = %q", got)
	}
	long := strings.Repeat("é", 1000) // 2000 bytes
	got := Truncate(long)
	if len(got) > MaxLogValue+32 || !strings.HasSuffix(got, "…(2000 bytes)") {
		t.Fatalf("Truncate(long) = %d bytes, %q", len(got), got[len(got)-20:])
	}
	if !strings.HasPrefix(got, strings.Repeat("é", MaxLogValue/2)) {
		t.Fatal("Truncate cut inside a rune")
	}
}

// flakyListener fails its first n Accepts with EMFILE.
type flakyListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if f.n > 0 {
		f.n--
		f.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

func TestListenerRetriesAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	l := Listen(&flakyListener{Listener: inner, n: 5}, ListenerConfig{Name: "test", Log: slog.New(slog.NewTextHandler(&buf, nil))})
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	c.Close()
	out := buf.String()
	if n := strings.Count(out, "accept failed"); n != 1 {
		t.Errorf("%d 'accept failed' lines, want 1 per episode:\n%s", n, out)
	}
	if !strings.Contains(out, "accepting again") || !strings.Contains(out, "failures=5") {
		t.Errorf("no recovery line with the count:\n%s", out)
	}
	// Close ends an Accept that waits.
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestListenerCapsPerAddress(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	l := Listen(inner, ListenerConfig{Name: "test", MaxPerAddr: 2, Log: slog.New(slog.NewTextHandler(&buf, nil))})
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	var got []net.Conn
	for range 2 {
		select {
		case c := <-accepted:
			got = append(got, c)
		case <-time.After(5 * time.Second):
			t.Fatal("the first two connections were not accepted")
		}
	}
	if _, ok := got[0].(*countedTCPConn); !ok {
		t.Errorf("a TCP connection came back as %T: writev would be lost", got[0])
	}
	// The three over the cap are closed by the server: their reads end.
	for _, c := range clients[2:] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, errTimeout(err)) {
			t.Fatalf("a connection over the cap stayed open: %v", err)
		}
	}
	if n := l.Open("127.0.0.1"); n != 2 {
		t.Fatalf("Open = %d, want 2", n)
	}
	if n := strings.Count(buf.String(), "too many from one address"); n != 1 {
		t.Errorf("%d refusal lines for 3 refusals in one window, want 1:\n%s", n, buf.String())
	}
	// Closing one (twice: counted once) makes room for one more.
	got[0].Close()
	got[0].Close()
	if n := l.Open("127.0.0.1"); n != 1 {
		t.Fatalf("Open after a close = %d, want 1", n)
	}
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no room after a connection closed")
	}
}

// errTimeout returns a sentinel that matches only a timeout, so a read
// that timed out (the connection stayed open) fails the check above.
func errTimeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return errSentinel
}

var errSentinel = errors.New("sentinel")

func TestSummary(t *testing.T) {
	s := NewSummary(50*time.Millisecond, 1)
	if ok, n := s.Note("a"); !ok || n != 0 {
		t.Fatalf("first Note = %v %d", ok, n)
	}
	for range 9 {
		if ok, _ := s.Note("a"); ok {
			t.Fatal("a repeat inside the window was to be logged")
		}
	}
	if ok, _ := s.Note("b"); !ok {
		t.Fatal("another key was held back")
	}
	time.Sleep(60 * time.Millisecond)
	if ok, n := s.Note("a"); !ok || n != 9 {
		t.Fatalf("after the window Note = %v %d, want true 9", ok, n)
	}
	b := NewSummary(time.Minute, 3)
	logged := 0
	for range 10 {
		if ok, _ := b.Note("x"); ok {
			logged++
		}
	}
	if logged != 3 {
		t.Fatalf("a burst of 3 logged %d of 10", logged)
	}
}

func TestBudget(t *testing.T) {
	b := NewBudget(3, 300*time.Millisecond)
	for i := range 3 {
		if !b.Allow("x") {
			t.Fatalf("refused after %d failures of 3", i)
		}
		b.Fail("x")
	}
	if b.Allow("x") {
		t.Fatal("allowed after the budget was spent")
	}
	if !b.Allow("y") {
		t.Fatal("another address was throttled")
	}
	time.Sleep(150 * time.Millisecond) // 1.5 tokens back
	if !b.Allow("x") {
		t.Fatal("no failure came back after the refill time")
	}
	var off *Budget
	off.Fail("x")
	if !off.Allow("x") {
		t.Fatal("a nil Budget refused")
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestHTTPHandler(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	h := HTTPHandler(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic("boom")
		}
		io.WriteString(w, "ok")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	before := Panics()
	if resp, err := http.Get(srv.URL + "/boom"); err == nil {
		resp.Body.Close()
		t.Fatalf("a panicking request got an answer: %s", resp.Status)
	}
	if got := Panics() - before; got != 1 {
		t.Fatalf("Panics grew by %d, want 1", got)
	}
	resp, err := http.Get(srv.URL + "/fine")
	if err != nil {
		t.Fatalf("the server stopped answering after a panic: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("after a panic: %q", b)
	}
	if !strings.Contains(buf.String(), "uri=/boom") {
		t.Errorf("the panic line does not name the request:\n%s", buf.String())
	}
}
