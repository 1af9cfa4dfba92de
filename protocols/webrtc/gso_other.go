//go:build !linux

package webrtc

import (
	"log/slog"
	"net"
	"net/netip"
)

// gsoConn batches a viewer's datagrams on Linux (gso_linux.go); elsewhere
// it is the plain socket.
type gsoConn struct{ *net.UDPConn }

func newGSOConn(c *net.UDPConn, _ *slog.Logger) *gsoConn { return &gsoConn{c} }

func (g *gsoConn) corkFor(netip.AddrPort) *cork { return nil }

func (g *gsoConn) release(*cork) {}

func (g *gsoConn) failed(error, int) {}

type cork struct{}

func (k *cork) begin() {}
func (k *cork) flush() {}

func (k *cork) add([]byte) bool { return false }

func (k *cork) tail(int) ([]byte, bool) { return nil, false }

func (k *cork) commit(int) {}
