package httpflv_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/httpflv"
	"github.com/streamhub/streamhub/protocols/internal/flv"
	"github.com/streamhub/streamhub/server"
)

// TestStalledReaderDelaysNoOne: 1000 readers of one stream are served by
// its pass (more than batchReaders, so the pass is paced), one of them
// never reads. Every other reader gets the whole stream; the stalled one
// is ended by the write timeout; the publisher's writes never wait.
func TestStalledReaderDelaysNoOne(t *testing.T) {
	const readers, frameSize = 1000, 4000
	var logs testfixtures.SyncBuffer // the server's log, shown if the test fails
	log := slog.New(slog.NewTextHandler(&logs, nil))
	hub := server.NewHub(server.HubConfig{Logger: log, PathConfig: func(string) server.PathConfig {
		c := server.DefaultPathConfig()
		c.GracePeriod = 0
		c.Join = server.JoinLive
		return c
	}})
	defer hub.Close()
	tr := &media.Track{ID: 0, Codec: media.CodecH264, SPS: sps, PPS: pps}
	pub, err := hub.PublishTrusted("live/x", []*media.Track{tr}, server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h := httpflv.New(httpflv.Config{WriteTimeout: 2 * time.Second}, hub, log)
	// Small send buffers, so that a reader that does not read fills its
	// socket within a few frames (the kernel would otherwise grow them to
	// megabytes and hide the stall).
	ts := httptest.NewUnstartedServer(h)
	ts.Listener = smallSendBuffers{ts.Listener}
	ts.Start()
	defer ts.Close()
	defer h.Close()
	addr := ts.Listener.Addr().String()

	// A keyframe first, so that live joins start at once.
	frame := func(i int) *media.Unit {
		nalu := make([]byte, frameSize)
		nalu[0] = 0x41
		key := i%30 == 0
		if key {
			nalu[0] = 0x65
		}
		d := time.Duration(i) * 33 * time.Millisecond
		p := [][]byte{nalu}
		if key {
			p = [][]byte{sps, pps, nalu}
		}
		return &media.Unit{Track: tr, DTS: d, PTS: d, KeyFrame: key, Payload: p}
	}

	get := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /live/x.flv HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
		return c, bufio.NewReader(c)
	}
	// The stalled reader: a tiny receive buffer (set before connecting,
	// so that the window is small from the start), never read.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	stalled, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(stalled, "GET /live/x.flv HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	defer stalled.Close()

	// Every reader counts its bytes; every 50th also parses its stream:
	// each picture once, in order (the pass hands bytes to a reader's own
	// goroutine and back when its socket fills: nothing lost, nothing
	// twice, nothing out of order).
	got := make([]int64, readers-1)
	pics := make([]int, readers-1)
	var wg sync.WaitGroup
	for i := range got {
		c, br := get()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			cr := &counter{r: br}
			if i%50 == 0 {
				pics[i] = -1
				resp, err := http.ReadResponse(bufio.NewReader(cr), nil)
				if err != nil {
					return
				}
				fr, err := flv.NewReader(resp.Body)
				if err != nil {
					return
				}
				last := -1
				for {
					tag, err := fr.Read()
					if err != nil {
						break
					}
					if tag.Type == flv.TagVideo && !tag.IsConfig() {
						if int(tag.Timestamp) <= last {
							return
						}
						last = int(tag.Timestamp)
						pics[i]++
					}
				}
				pics[i]++ // from -1
			}
			io.Copy(io.Discard, cr)
			got[i] = cr.n
		}()
	}
	// Every reader is attached before the first unit.
	deadline := time.Now().Add(20 * time.Second)
	for st := hub.Stream("live/x"); st == nil || st.ReaderCount() < readers; st = hub.Stream("live/x") {
		if time.Now().After(deadline) {
			t.Fatalf("only %d readers attached", st.ReaderCount())
		}
		time.Sleep(20 * time.Millisecond)
	}

	const frames = 120 // 4 s at 30 fps: the stalled reader's timeout (2 s) passes
	var slowest time.Duration
	next := time.Now()
	for i := 0; i < frames; i++ {
		t0 := time.Now()
		pub.Write(frame(i))
		slowest = max(slowest, time.Since(t0))
		next = next.Add(33 * time.Millisecond)
		time.Sleep(time.Until(next))
	}
	pub.Close() // the stream ends: every reader's body ends
	wg.Wait()

	best := slices.Max(got)
	if best < frames*frameSize {
		t.Fatalf("the best reader got %d bytes, less than the %d of the pictures", best, frames*frameSize)
	}
	for i, n := range pics {
		if i%50 == 0 && n != frames {
			t.Errorf("reader %d parsed %d pictures in order, want %d", i, n, frames)
		}
	}
	short := 0
	for i, n := range got {
		if n*100 < best*99 {
			t.Errorf("reader %d got %d bytes of %d (under 99%%)", i, n, best)
			short++
		}
	}
	if short > 0 {
		shown := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "session closed") && !strings.Contains(l, "stream closed") && shown < 20 {
				t.Log(l)
				shown++
			}
		}
	}
	// The stalled reader was ended by the write timeout while the stream
	// went on: the server closed its connection with less than the others
	// got (what its socket buffers held).
	stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, stalled)
	if err != nil {
		t.Fatalf("the stalled reader's connection was not closed by the server: %v", err)
	}
	if n >= best {
		t.Fatalf("the stalled reader got all %d bytes: it never stalled (the test's buffers are too large)", n)
	}
	t.Logf("publisher's slowest write %s; readers got %d bytes each", slowest, best)
}

// smallSendBuffers gives accepted connections a 16 KiB send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestConnectStormLeavesNothing: 5000 readers that connect and hang up
// at once (some before the response, some after its first bytes) leave
// no goroutine, file descriptor or pass behind.
func TestConnectStormLeavesNothing(t *testing.T) {
	_, _, ts := setup(t)
	addr := ts.Listener.Addr().String()
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd here") // Linux only, as the server
		}
		return len(ents)
	}
	settle := func() (int, int) {
		var g, f int
		for i := 0; i < 100; i++ { // the server's goroutines end after the peers hang up
			g, f = runtime.NumGoroutine(), fds()
			time.Sleep(20 * time.Millisecond)
			if g2, f2 := runtime.NumGoroutine(), fds(); g2 == g && f2 == f {
				break
			}
		}
		return g, f
	}
	g0, f0 := settle()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < 5000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "GET /live/x.flv HTTP/1.1\r\nHost: x\r\n\r\n")
			if i%2 == 0 {
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				c.Read(make([]byte, 64)) //nolint:errcheck // the first bytes, or not
			}
			c.Close()
		}()
	}
	wg.Wait()
	g1, f1 := settle()
	if g1 > g0+5 || f1 > f0+5 {
		t.Fatalf("after 5000 connects and hang-ups: %d goroutines (were %d), %d fds (were %d)", g1, g0, f1, f0)
	}
}
