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
// Where the kernel cannot (the probe at start fails) corks are never made;
// where the route's device cannot (a send says EIO), GSO is turned off for
// good and the run goes datagram by datagram.

// gsoMaxSegments and gsoMaxBytes bound one GSO send (the kernel takes up
// to 64 segments and a 64 KiB datagram).
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 60000
)

// gsoConn is the ICE UDP mux's socket. It implements pion/ice's
// AddrPortReaderWriter so that the mux's writes reach WriteToAddrPort.
type gsoConn struct {
	*net.UDPConn
	raw   syscall.RawConn
	inet6 bool // the socket is AF_INET6 (IPv4 peers as mapped addresses)
	log   *slog.Logger

	gso   atomic.Bool
	corks sync.Map // netip.AddrPort (unmapped) -> *cork

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
	return g
}

// ReadFromAddrPort is pion/ice's allocation-free read.
func (g *gsoConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return g.UDPConn.ReadFromUDPAddrPort(b)
}

// WriteToAddrPort sends b to a, or keeps a copy in a's cork while a
// viewer gathers its packets.
func (g *gsoConn) WriteToAddrPort(b []byte, a netip.AddrPort) (int, error) {
	if k, ok := g.corks.Load(unmapped(a)); ok && k.(*cork).add(b) {
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
	k := &cork{g: g, addr: a, to: to}
	g.corks.Store(a, k)
	return k
}

// release stops batching for k's peer and sends what it held.
func (g *gsoConn) release(k *cork) {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.depth = 0
	k.sendLocked()
	k.mu.Unlock()
	g.corks.CompareAndDelete(k.addr, k)
}

// cork gathers the datagrams to one peer between begin and flush.
type cork struct {
	g    *gsoConn
	addr netip.AddrPort
	to   unix.Sockaddr

	mu    sync.Mutex
	depth int
	data  []byte // the gathered datagrams, back to back (from corkBufs)
	sizes []int
	bufs  [][]byte
	oob   [64]byte
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
	if k.depth > 0 {
		k.depth--
	}
	if k.depth == 0 {
		k.sendLocked()
	}
	k.mu.Unlock()
}

// add keeps a copy of b if k is gathering; false if it is not.
func (k *cork) add(b []byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.depth == 0 {
		return false
	}
	if len(k.sizes) == gsoMaxSegments || len(k.data)+len(b) > gsoMaxBytes {
		k.sendLocked()
	}
	if k.data == nil {
		k.data = corkBufs.Get().([]byte)
	}
	k.data = append(k.data, b...)
	k.sizes = append(k.sizes, len(b))
	return true
}

// sendLocked sends the gathered datagrams: runs of equal sizes (the last
// of a run may be shorter) as one GSO send each.
func (k *cork) sendLocked() {
	off := 0
	for i := 0; i < len(k.sizes); {
		seg := k.sizes[i]
		j, n := i+1, seg
		for j < len(k.sizes) && k.sizes[j] <= seg {
			n += k.sizes[j]
			j++
			if k.sizes[j-1] < seg {
				break // a shorter datagram ends a run
			}
		}
		k.send(k.data[off:off+n], seg, j-i)
		off += n
		i = j
	}
	if k.data != nil {
		corkBufs.Put(k.data[:0])
	}
	k.data, k.sizes = nil, k.sizes[:0]
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
	oob := k.oob[:unix.CmsgSpace(2)]
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
