// Command loopback is the floor for bench/run.sh: the least a server can
// spend to push an FLV stream to N readers over loopback. It serves one FLV
// file over HTTP to every reader, paced in real time, with no hub, no tags
// and no per-unit work, and with none of a server's per-reader machinery:
// one sender goroutine (locked to its thread) walks every reader each
// -interval and hands each the bytes of that interval in one write(2) on
// its non-blocking socket; no goroutine, timer or deadline per reader. A
// reader whose socket is full keeps its remainder for the next pass (and
// is dropped once it is a second behind). bench/run.sh -baseline runs it
// beside streamhub so that the CPU per reader-second of both come from the
// same machine in the same run; -interval should be streamhub's batch
// interval at that many readers (paths' batchInterval, 100 ms from
// batchReaders, 500) so that both make writes of the same size.
//
//	go run ./bench/loopback -file bench/out/src-720p30.flv -addr 127.0.0.1:18090 -duration 30s -interval 100ms
//
// -mode goroutine is the previous floor for comparison: a goroutine per
// reader writing -chunk bytes, paced by its own sleep.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	file := flag.String("file", "", "FLV file to serve (bench/run.sh makes bench/out/src-720p30.flv)")
	addr := flag.String("addr", "127.0.0.1:18090", "listen address")
	dur := flag.Duration("duration", 30*time.Second, "the file's playing time, for pacing")
	interval := flag.Duration("interval", 100*time.Millisecond, "one pass over every reader this often (-mode pass)")
	chunk := flag.Int("chunk", 32<<10, "bytes per write (-mode goroutine)")
	mode := flag.String("mode", "pass", "pass (one sender for all readers) or goroutine (one per reader)")
	flag.Parse()
	data, err := os.ReadFile(*file)
	if err != nil || len(data) < 13 {
		log.Fatalf("loopback: -file: %v", err)
	}
	// Skip the file's 13-byte header; each reader gets it once, then the
	// tags in a loop (timestamps restart: flvload does not care).
	header, body := data[:13], data[13:]
	head := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nConnection: close\r\n\r\n"), header...)
	var h http.HandlerFunc
	switch *mode {
	case "pass":
		p := &passer{body: body, rate: float64(len(body)) / dur.Seconds()}
		go p.run(*interval)
		h = func(w http.ResponseWriter, r *http.Request) { p.add(w, head) }
	case "goroutine":
		h = func(w http.ResponseWriter, r *http.Request) { perReader(w, head, body, *chunk, *dur) }
	default:
		log.Fatalf("loopback: -mode is pass or goroutine")
	}
	fmt.Fprintln(os.Stderr, "loopback: serving", *file, "on", *addr, "mode", *mode)
	log.Fatal(http.ListenAndServe(*addr, h))
}

// passer is the one sender of -mode pass.
type passer struct {
	body []byte
	rate float64 // bytes per second of the file

	mu    sync.Mutex
	conns []*reader
}

type reader struct {
	nc      net.Conn
	fd      int
	off     int // where in body this reader is
	pending int // bytes it is owed and has not taken
}

// add takes over a hijacked connection: the head is written at once, the
// body by the sender.
func (p *passer) add(w http.ResponseWriter, head []byte) {
	nc, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if _, err := nc.Write(head); err != nil {
		nc.Close()
		return
	}
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		nc.Close()
		return
	}
	fd := -1
	_ = raw.Control(func(f uintptr) { fd = int(f) })
	p.mu.Lock()
	p.conns = append(p.conns, &reader{nc: nc, fd: fd})
	p.mu.Unlock()
}

// run makes one pass every interval: each reader is owed the bytes of the
// time since the last pass and gets them in one write.
func (p *passer) run(interval time.Duration) {
	runtime.LockOSThread()
	t := time.NewTicker(interval)
	last := time.Now()
	owed := 0.0
	for now := range t.C {
		owed += now.Sub(last).Seconds() * p.rate
		last = now
		n := int(owed)
		owed -= float64(n)
		limit := int(p.rate) // a second behind: dropped
		p.mu.Lock()
		keep := p.conns[:0]
		for _, r := range p.conns {
			r.pending += n
			if r.pending > limit || !p.write(r) {
				r.nc.Close()
				continue
			}
			keep = append(keep, r)
		}
		clear(p.conns[len(keep):])
		p.conns = keep
		p.mu.Unlock()
	}
}

// write sends what r is owed, wrapping around the body, in one write(2)
// (two where the body wraps); false when the connection is gone.
func (p *passer) write(r *reader) bool {
	for r.pending > 0 {
		want := min(r.off+r.pending, len(p.body)) - r.off
		n, err := unix.Write(r.fd, p.body[r.off:r.off+want])
		if err == unix.EAGAIN {
			return true // full: the rest waits for the next pass
		}
		if err != nil || n <= 0 {
			return false
		}
		r.pending -= n
		r.off = (r.off + n) % len(p.body)
		if n < want {
			return true // a short write: the socket is full
		}
	}
	return true
}

// perReader is -mode goroutine: the previous floor.
func perReader(w http.ResponseWriter, head, body []byte, chunk int, dur time.Duration) {
	nc, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer nc.Close()
	if _, err := nc.Write(head); err != nil {
		return
	}
	perChunk := time.Duration(float64(dur) * float64(chunk) / float64(len(body)))
	next := time.Now()
	for off := 0; ; off = (off + chunk) % len(body) {
		end := min(off+chunk, len(body))
		if _, err := nc.Write(body[off:end]); err != nil {
			return
		}
		next = next.Add(perChunk)
		time.Sleep(time.Until(next))
	}
}
