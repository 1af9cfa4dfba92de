// Package connset tracks a server's live connections so that shutdown can
// close them all, including hijacked HTTP connections that http.Server no
// longer sees.
package connset

import (
	"net"
	"sync"
)

// Set is a set of connections. The zero value is ready to use.
type Set struct {
	mu     sync.Mutex // mu guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// Add tracks c. After CloseAll it closes c and returns false instead.
func (s *Set) Add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

// Remove stops tracking c; it does not close it.
func (s *Set) Remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// CloseAll closes every tracked connection and makes later Adds fail.
func (s *Set) CloseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}
