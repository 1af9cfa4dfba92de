//go:build linux

package webrtc

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The ICE UDP port used to send one datagram per sendto: with 200 viewers
// at 2.7 Mbit/s, some 60,000 system calls a second, and the kernel's
// per-call path (socket lookup, route, IP output, loopback or driver) was
// most of a viewer's CPU. A viewer sends the packets of the units it read
// at once (about ten for a 720p picture) back to back to one peer, so
// gsoConn lets it gather them (cork) and send runs of them in one sendmsg
// with UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18+): the
// kernel walks its send path once per run and cuts the buffer into the
// same datagrams at the end (the NIC does where it can). Nothing waits
// for a timer: the packets leave when the viewer has written what it had,
// from its own goroutine, as they did. (One goroutine sending every
// viewer's datagrams with sendmmsg was tried: no cheaper here, since the
// per-datagram kernel work dominates, and a queue that grows in join
// bursts.)
//
// The sound is the other half of a viewer's datagrams: one Opus packet
// per 20 ms, 50 a second against some 30 pictures, each its own sendto
// (and, on loopback, its own wake-up of the receiver) was a quarter of the
// server's CPU at 200 viewers. The viewer's send loop therefore writes
// the sound that came since the last picture in the picture's batch
// (egress.go, audioWait), and every run of a flush (GSO runs of different
// sizes, the audio) leaves in one sendmmsg (golang.org/x/net).
//
// Where the kernel cannot (the probe at start fails) corks are never made;
// where the route's device cannot (a send says EIO), GSO is turned off for
// good and the run goes datagram by datagram.

// gsoMaxSegments and gsoMaxBytes bound one GSO send (the kernel takes up
// to 64 segments and a 64 KiB datagram).
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 60000
)

// batchWriter sends several datagrams in one sendmmsg (x/net's ipv4 and
// ipv6 PacketConn; their Message is the same type).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// gsoConn is the ICE UDP mux's socket. It implements pion/ice's
// AddrPortReaderWriter so that the mux's writes reach WriteToAddrPort.
type gsoConn struct {
	*net.UDPConn
	raw   syscall.RawConn
	inet6 bool // the socket is AF_INET6 (IPv4 peers as mapped addresses)
	log   *slog.Logger

	gso   atomic.Bool
	batch batchWriter // nil: one sendmsg per run
	// corks are the peers' corks by (unmapped) address: a plain map under
	// a read lock, looked up for every datagram (sync.Map's boxed keys
	// cost twice as much).
	corksMu sync.RWMutex
	corks   map[netip.AddrPort]*cork

	errLogged atomic.Bool
	dropped   atomic.Uint64 // datagrams a batched send could not send
}

// newGSOConn wraps the ICE UDP socket; a socket without GSO works as it
// did (corkFor returns nil).
func newGSOConn(c *net.UDPConn, log *slog.Logger) *gsoConn {
	g := &gsoConn{UDPConn: c, log: log}
	raw, err := c.SyscallConn()
	if err != nil {
		return g
	}
	g.raw = raw
	ok := false
	_ = raw.Control(func(fd uintptr) {
		dom, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			return
		}
		g.inet6 = dom == unix.AF_INET6
		// The option is readable where the kernel has UDP GSO.
		_, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		ok = err == nil
	})
	g.gso.Store(ok)
	if g.inet6 {
		g.batch = ipv6.NewPacketConn(c)
	} else {
		g.batch = ipv4.NewPacketConn(c)
	}
	return g
}

// ReadFromAddrPort is pion/ice's allocation-free read.
func (g *gsoConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return g.UDPConn.ReadFromUDPAddrPort(b)
}

// WriteToAddrPort sends b to a, or keeps a copy in a's cork while a
// viewer gathers its packets.
func (g *gsoConn) WriteToAddrPort(b []byte, a netip.AddrPort) (int, error) {
	g.corksMu.RLock()
	k := g.corks[unmapped(a)]
	g.corksMu.RUnlock()
	if k != nil && k.add(b) {
		return len(b), nil
	}
	return g.UDPConn.WriteToUDPAddrPort(b, a)
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// corkFor returns a cork for the peer at a, nil if this socket cannot
// batch or a is not a peer it can send to. Release it with release.
func (g *gsoConn) corkFor(a netip.AddrPort) *cork {
	if !g.gso.Load() || g.raw == nil || !a.IsValid() || a.Addr().Zone() != "" {
		return nil
	}
	a = unmapped(a)
	var to unix.Sockaddr
	switch {
	case g.inet6:
		to = &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
	case a.Addr().Is4():
		to = &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
	default:
		return nil
	}
	k := &cork{g: g, addr: a, to: to, uaddr: net.UDPAddrFromAddrPort(a)}
	g.corksMu.Lock()
	if g.corks == nil {
		g.corks = make(map[netip.AddrPort]*cork)
	}
	g.corks[a] = k
	g.corksMu.Unlock()
	return k
}

// release stops batching for k's peer and sends what it gathered.
func (g *gsoConn) release(k *cork) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer g.dropCork(k)
	defer k.mu.Unlock()
	k.depth = 0
	k.sendLocked()
}

// dropCork forgets k, unless its address has a newer cork.
func (g *gsoConn) dropCork(k *cork) {
	g.corksMu.Lock()
	defer g.corksMu.Unlock()
	if g.corks[k.addr] == k {
		delete(g.corks, k.addr)
	}
}

// cork gathers the datagrams to one peer between begin and flush.
type cork struct {
	g     *gsoConn
	addr  netip.AddrPort
	to    unix.Sockaddr
	uaddr *net.UDPAddr // addr, for sendmmsg

	mu    sync.Mutex
	depth int
	data  []byte // the gathered datagrams, back to back (from corkBufs)
	sizes []int
	bufs  [][]byte
	oob   [64]byte

	// scratch of sendLocked
	runs []gsoRun
	msgs []ipv4.Message
	iovs [][]byte
	oobs [][]byte
}

// gsoRun is count datagrams of seg bytes (the last may be shorter) back
// to back in b: one GSO send.
type gsoRun struct {
	b          []byte
	seg, count int
}

// corkBufs are the corks' buffers: a viewer holds one only while it
// writes, so a few serve any number of viewers.
var corkBufs = sync.Pool{New: func() any { return make([]byte, 0, gsoMaxBytes+2048) }}

// begin starts gathering; flush sends what was gathered. They nest.
func (k *cork) begin() {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.depth++
	k.mu.Unlock()
}

func (k *cork) flush() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.depth > 0 {
		k.depth--
	}
	if k.depth == 0 {
		k.sendLocked()
	}
}

// add keeps a copy of b if k is gathering; false if it is not (and for
// an empty datagram or one over gsoMaxBytes, which the caller sends on
// its own).
func (k *cork) add(b []byte) bool {
	if len(b) == 0 || len(b) > gsoMaxBytes {
		return false
	}
	buf, ok := k.tail(len(b))
	if ok {
		k.commit(copy(buf, b))
	}
	return ok
}

// tail returns room for n bytes at the end of what k gathered, with k
// locked until commit; false (k unlocked) if k is not gathering.
func (k *cork) tail(n int) ([]byte, bool) {
	if k == nil {
		return nil, false
	}
	k.mu.Lock()
	ok := false
	defer func() {
		if !ok { // not gathering, or sendLocked panicked
			k.mu.Unlock()
		}
	}()
	if k.depth == 0 {
		return nil, false
	}
	if len(k.sizes) == gsoMaxSegments || len(k.data)+n > gsoMaxBytes {
		k.sendLocked()
	}
	if k.data == nil {
		k.data = corkBufs.Get().([]byte)
	}
	ok = true
	return k.data[len(k.data) : len(k.data)+n], true
}

// commit keeps the first m bytes of the room tail gave as a datagram (none
// when m is 0) and unlocks k.
func (k *cork) commit(m int) {
	if m > 0 {
		k.data = k.data[:len(k.data)+m]
		k.sizes = append(k.sizes, m)
	}
	k.mu.Unlock()
}

// sendLocked sends what is gathered: runs of equal sizes (the last of a
// run may be shorter) as one GSO send each, all the runs in one sendmmsg.
func (k *cork) sendLocked() {
	k.runs = appendRuns(k.runs[:0], k.data, k.sizes, k.g.gso.Load())
	switch {
	case len(k.runs) == 0:
	case len(k.runs) == 1 || k.g.batch == nil:
		for _, r := range k.runs {
			k.send(r.b, r.seg, r.count)
		}
	default:
		k.sendBatch()
	}
	clear(k.runs) // no references to the buffers kept
	if k.data != nil {
		corkBufs.Put(k.data[:0])
	}
	k.data, k.sizes = nil, k.sizes[:0]
}

// appendRuns appends the runs of the datagrams of sizes lying back to
// back in data: with gso, equal sizes together (a shorter one ends a run),
// else one datagram a run.
func appendRuns(runs []gsoRun, data []byte, sizes []int, gso bool) []gsoRun {
	off := 0
	for i := 0; i < len(sizes); {
		seg := sizes[i]
		j, n := i+1, seg
		for gso && j < len(sizes) && sizes[j] <= seg {
			n += sizes[j]
			j++
			if sizes[j-1] < seg {
				break // a shorter datagram ends a run
			}
		}
		runs = append(runs, gsoRun{b: data[off : off+n], seg: seg, count: j - i})
		off += n
		i = j
	}
	return runs
}

// sendBatch sends k.runs in one sendmmsg. The kernel stops at a message
// it refuses: that run goes on its own (send, which knows the fallbacks:
// datagram by datagram, GSO off for good), and the rest in a new batch,
// or one by one once GSO is off (their messages ask for segmentation).
func (k *cork) sendBatch() {
	n := len(k.runs)
	for len(k.iovs) < n {
		k.iovs = append(k.iovs, nil)
		k.oobs = append(k.oobs, make([]byte, unix.CmsgSpace(2)))
	}
	k.msgs = k.msgs[:0]
	for i, r := range k.runs {
		k.iovs[i] = r.b
		m := ipv4.Message{Buffers: k.iovs[i : i+1 : i+1], Addr: k.uaddr}
		if r.count > 1 {
			m.OOB = putSegmentOOB(k.oobs[i], r.seg)
		}
		k.msgs = append(k.msgs, m)
	}
	for i := 0; i < n; {
		if !k.g.gso.Load() {
			r := k.runs[i]
			k.send(r.b, r.seg, r.count)
			i++
			continue
		}
		sent, err := k.g.batch.WriteBatch(k.msgs[i:], 0)
		if sent > 0 { // x/net says -1 with the error of a first message refused
			i += sent
		}
		if (err != nil || sent <= 0) && i < n {
			r := k.runs[i]
			k.send(r.b, r.seg, r.count)
			i++
		}
	}
	clear(k.iovs[:n])
	clear(k.msgs)
}

// send sends count datagrams of seg bytes (the last may be shorter) that
// lie back to back in b.
func (k *cork) send(b []byte, seg, count int) {
	g := k.g
	if count > 1 && g.gso.Load() {
		err := k.sendmsg(b, k.segmentOOB(seg))
		if err == nil {
			return
		}
		switch err {
		case unix.EINVAL:
			// This peer's route cannot take the run (a path MTU below the
			// segment size): this run goes datagram by datagram.
		case unix.EIO, unix.EOPNOTSUPP:
			// The device cannot segment (no checksum offload): one
			// datagram a call from now on.
			if g.gso.CompareAndSwap(true, false) {
				g.log.Warn("webrtc: the ICE UDP socket cannot use UDP segmentation offload here; sending one datagram per call", "error", err)
			}
		default:
			g.failed(err, count)
			return
		}
	}
	for len(b) > 0 {
		n := min(seg, len(b))
		if err := k.sendmsg(b[:n], nil); err != nil {
			g.failed(err, 1)
		}
		b = b[n:]
	}
}

func (k *cork) sendmsg(b, oob []byte) error {
	var err error
	k.bufs = append(k.bufs[:0], b)
	werr := k.g.raw.Write(func(fd uintptr) bool {
		_, err = unix.SendmsgBuffers(int(fd), k.bufs, oob, k.to, 0)
		return err != unix.EAGAIN
	})
	if werr != nil {
		return werr
	}
	return err
}

// segmentOOB is the UDP_SEGMENT control message for seg-byte segments.
func (k *cork) segmentOOB(seg int) []byte {
	return putSegmentOOB(k.oob[:unix.CmsgSpace(2)], seg)
}

// putSegmentOOB writes the UDP_SEGMENT control message for seg-byte
// segments into oob (unix.CmsgSpace(2) bytes) and returns it.
func putSegmentOOB(oob []byte, seg int) []byte {
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
	return oob
}

// failed counts datagrams a send lost (the peer's NACKs ask again) and
// says so once.
func (g *gsoConn) failed(err error, count int) {
	g.dropped.Add(uint64(count))
	if g.errLogged.CompareAndSwap(false, true) {
		g.log.Warn("webrtc: a batched UDP send failed; its datagrams are lost (said once)", "error", err)
	}
}
