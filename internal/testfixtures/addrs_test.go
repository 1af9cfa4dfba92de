package testfixtures

import (
	"strings"
	"testing"
)

// A server that bound port 0 for WebRTC's UDP and TCP got two ports: Bound
// keeps both, and the config of a restart asks for the same two (asking
// for the UDP port over TCP raced other processes for it).
func TestBoundKeepsBothWebRTCPorts(t *testing.T) {
	log := `time=x level=INFO msg=listening proto=webrtc udp=[::]:52857 tcp=[::]:36755
time=x level=INFO msg=listening proto=http address=127.0.0.1:46839`
	a, up := Bound(log, Addrs{}.Dynamic())
	if !up || a.WebRTC != 52857 || a.WebRTCTCP != 36755 {
		t.Fatalf("bound %+v (http up %v)", a, up)
	}
	y := a.YAML("info")
	if !strings.Contains(y, `udpAddress: ":52857"`) || !strings.Contains(y, `tcpAddress: ":36755"`) {
		t.Fatalf("restart config:\n%s", y)
	}
	if y := (Addrs{WebRTC: 9000}).YAML("info"); !strings.Contains(y, `tcpAddress: ":9000"`) {
		t.Fatalf("a picked port serves both:\n%s", y)
	}
}
