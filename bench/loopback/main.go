// Command loopback is the reference for bench/run.sh: the least a server can
// spend to push an FLV stream to N readers over loopback. It serves one FLV
// file over HTTP to every reader, paced in real time, in plain 32 KiB writes
// with no hub, no tags and no per-unit work. bench/run.sh -baseline runs it
// beside streamhub so that the CPU per reader-second of both come from the
// same machine in the same run.
//
//	go run ./bench/loopback -file bench/out/src-720p30.flv -addr 127.0.0.1:18090 -duration 30s
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	file := flag.String("file", "", "FLV file to serve (bench/run.sh makes bench/out/src-720p30.flv)")
	addr := flag.String("addr", "127.0.0.1:18090", "listen address")
	dur := flag.Duration("duration", 30*time.Second, "the file's playing time, for pacing")
	chunk := flag.Int("chunk", 32<<10, "bytes per write")
	flag.Parse()
	data, err := os.ReadFile(*file)
	if err != nil || len(data) < 13 {
		log.Fatalf("loopback: -file: %v", err)
	}
	// Skip the file's 13-byte header; each reader gets it once, then the
	// tags in a loop (timestamps restart: flvload does not care).
	header, body := data[:13], data[13:]
	perChunk := time.Duration(float64(*dur) * float64(*chunk) / float64(len(body)))
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Hijack, so that each chunk is exactly one write(2): no chunked
		// framing, the body ends when the connection does.
		nc, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		if _, err := nc.Write(append([]byte("HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nConnection: close\r\n\r\n"), header...)); err != nil {
			return
		}
		next := time.Now()
		for off := 0; ; off = (off + *chunk) % len(body) {
			end := min(off+*chunk, len(body))
			if _, err := nc.Write(body[off:end]); err != nil {
				return
			}
			next = next.Add(perChunk)
			time.Sleep(time.Until(next))
		}
	})
	fmt.Fprintln(os.Stderr, "loopback: serving", *file, "on", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
