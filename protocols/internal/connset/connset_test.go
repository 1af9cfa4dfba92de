package connset

import (
	"net"
	"testing"
)

func TestCloseAllClosesTrackedAndRefusesNew(t *testing.T) {
	var s Set
	a1, a2 := net.Pipe()
	b1, b2 := net.Pipe()
	c1, c2 := net.Pipe()
	defer a2.Close()
	defer b2.Close()
	defer c2.Close()
	if !s.Add(a1) || !s.Add(b1) {
		t.Fatal("Add refused before CloseAll")
	}
	s.Remove(b1)
	s.CloseAll()
	if _, err := a1.Write([]byte{1}); err == nil {
		t.Fatal("a tracked connection is still open after CloseAll")
	}
	go b2.Read(make([]byte, 1)) //nolint:errcheck // lets the write below complete
	if _, err := b1.Write([]byte{1}); err != nil {
		t.Fatalf("a removed connection was closed: %v", err)
	}
	if s.Add(c1) {
		t.Fatal("Add accepted after CloseAll")
	}
	if _, err := c1.Write([]byte{1}); err == nil {
		t.Fatal("a connection refused by Add was left open")
	}
	b1.Close()
}
