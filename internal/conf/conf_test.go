package conf

import (
	"strings"
	"testing"
	"time"
)

func TestProblems(t *testing.T) {
	p := New("rtmp")
	p.Address("address", "", true, ":1935")       // off: fine
	p.Address("address", ":1935", false, ":1935") // fine
	p.Address("other", "1935", true, ":1935")     // no port separator
	p.Address("udp", "", false, ":8189")          // may not be off
	p.Duration("readTimeout", time.Millisecond, 100*time.Millisecond, 10*time.Minute)
	p.Duration("writeTimeout", time.Second, 100*time.Millisecond, 10*time.Minute) // fine
	p.Bad("x", "is %s", "wrong")
	var got []string
	for _, e := range p.Errs() {
		got = append(got, e.Error())
	}
	want := []string{
		`rtmp.other: must be HOST:PORT or :PORT, e.g. ":1935", or empty to switch it off (got "1935")`,
		`rtmp.udp: must be HOST:PORT or :PORT, e.g. ":8189" (got "")`,
		`rtmp.readTimeout: must be between 100ms and 10m (got 1ms)`,
		`rtmp.x: is wrong`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := Port(":99999"); err == nil {
		t.Error("Port accepted 99999")
	}
}
