// Command udpfloor is the kernel's floor for the WebRTC figures of
// bench/run.sh -proto webrtc: the CPU a sender spends to push the same
// datagrams to N viewers over loopback as streamhub's WHEP viewers do, with
// no SRTP, no hub and no pion. Every -frame (33 ms: 30 pictures a second)
// it sends each viewer one picture's worth of -packet-byte datagrams as one
// UDP GSO run (UDP_SEGMENT), with the audio of that interval (one -audio
// byte datagram per 20 ms) in the same sendmmsg, from one goroutine per
// viewer as streamhub does. A child process (the same binary with -recv)
// reads the datagrams on N sockets, one goroutine each, as the viewers'
// pion clients do. On loopback the receiver's kernel work (the segments'
// way up the stack, the socket queue, the wake-ups) runs in the sender's
// context and is charged to it, as it is to streamhub.
//
//	go run ./bench/udpfloor -n 200 -t 20s -kbps 2700
//
// The report is the sender's CPU per viewer-second from /proc (utime +
// stime), beside which streamhub's figure is read.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 200, "viewers")
	dur := flag.Duration("t", 20*time.Second, "sending time")
	kbps := flag.Int("kbps", 2700, "video bit rate per viewer (kbit/s, the SRTP packets' payload and headers)")
	packet := flag.Int("packet", 1228, "video datagram size (1200 payload + 12 RTP + 16 SRTP tag)")
	audio := flag.Int("audio", 180, "audio datagram size, one per 20 ms")
	frame := flag.Duration("frame", time.Second/30, "picture interval")
	recv := flag.String("recv", "", "internal: receive on this many sockets and print their ports")
	flag.Parse()
	if *recv != "" {
		receive(*recv)
		return
	}

	child := exec.Command(os.Args[0], "-recv", strconv.Itoa(*n))
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := child.Start(); err != nil {
		log.Fatal(err)
	}
	defer child.Process.Kill() //nolint:errcheck // the receiver has no state
	var ports []int
	for len(ports) < *n {
		var p int
		if _, err := fmt.Fscan(out, &p); err != nil {
			log.Fatalf("udpfloor: receiver: %v", err)
		}
		ports = append(ports, p)
	}

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	pc := ipv4.NewPacketConn(c)
	perFrame := *kbps * 1000 / 8 * int(*frame) / int(time.Second) // bytes of video per picture
	segs := max(1, perFrame / *packet)
	video := make([]byte, segs**packet)
	snd := make([]byte, *audio)
	var sent atomic.Uint64
	start := cpu()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, p := range ports {
		wg.Add(1)
		go func(i int, to *net.UDPAddr) {
			defer wg.Done()
			oob := make([]byte, unix.CmsgSpace(2))
			h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
			h.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(*packet))
			// Viewers start spread over one picture interval, as a ramp
			// spreads them.
			tick := time.NewTicker(*frame)
			defer tick.Stop()
			time.Sleep(*frame * time.Duration(i) / time.Duration(len(ports)))
			var audioOwed time.Duration
			for end := time.Now().Add(*dur); time.Now().Before(end); <-tick.C {
				msgs := []ipv4.Message{{Buffers: [][]byte{video}, OOB: oob, Addr: to}}
				for audioOwed += *frame; audioOwed >= 20*time.Millisecond; audioOwed -= 20 * time.Millisecond {
					msgs = append(msgs, ipv4.Message{Buffers: [][]byte{snd}, Addr: to})
				}
				if k, err := pc.WriteBatch(msgs, 0); err == nil {
					sent.Add(uint64(k))
				}
			}
		}(i, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
	}
	wg.Wait()
	used := cpu() - start
	el := time.Since(t0)
	vs := float64(len(ports)) * dur.Seconds()
	fmt.Printf("viewers %d, %s, video %d kbit/s as %d datagrams of %d bytes per %s (one GSO run), audio %d bytes per 20 ms\n",
		len(ports), el.Round(time.Millisecond), *kbps, segs, *packet, *frame, *audio)
	fmt.Printf("sender CPU %.2f s: %.3f ms per viewer-second\n", used.Seconds(), 1000*used.Seconds()/vs)
}

// cpu is this process's CPU time (utime + stime).
func cpu() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// receive opens n sockets on loopback, prints their ports and reads them
// until killed.
func receive(arg string) {
	n, err := strconv.Atoi(arg)
	if err != nil {
		log.Fatal(err)
	}
	var ports []string
	for range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			log.Fatal(err)
		}
		_ = c.SetReadBuffer(1 << 20)
		ports = append(ports, strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
		go func() {
			b := make([]byte, 2048)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(b); err != nil {
					return
				}
			}
		}()
	}
	fmt.Println(strings.Join(ports, "\n"))
	select {}
}
