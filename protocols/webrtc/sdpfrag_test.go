package webrtc

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestParseSDPFrag(t *testing.T) {
	f, err := parseSDPFrag("a=ice-options:trickle\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n" +
		"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\na=candidate:2 1 tcp 1518280447 192.0.2.1 0 typ host tcptype active\r\na=end-of-candidates\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if f.Ufrag != "EsAw" || f.Pwd != "P2uYro0UCOQ4zxjKXaWCBui1" || len(f.Candidates) != 2 || f.Candidates[0].Mid != "0" ||
		!strings.HasPrefix(f.Candidates[0].Value, "candidate:1387637174 1 udp") || !f.EndOfCandidates {
		t.Fatalf("%+v", f)
	}
	for _, bad := range []string{
		"a=ice-ufrag:ab\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n", // ufrag too short
		"a=ice-ufrag:EsAw\r\n", // pwd missing
		"a=ice-ufrag:Es Aw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n", // bad character
		"a=candidate:1 1 udp 2122260223 192.0.2.1 61764 host\r\n",     // no typ
		"a=candidate:1 x udp 2122260223 192.0.2.1 61764 typ host\r\n", // component
		"a=candidate:1 1 udp 2122260223 192.0.2.1 99999 typ host\r\n", // port
		"garbage\r\n", // not type=value
		"a=mid:" + strings.Repeat("x", 40) + "\r\n", // mid too long
		strings.Repeat("a=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n", maxFragCandidates+1),
	} {
		if _, err := parseSDPFrag(bad); !errors.Is(err, errBadFrag) {
			t.Errorf("%q: err %v, want errBadFrag", bad, err)
		}
	}
}

// FuzzSDPFrag: any body either parses into a fragment whose values are
// within the limits, or is refused with errBadFrag; never a panic.
func FuzzSDPFrag(f *testing.F) {
	f.Add("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\na=end-of-candidates\r\n")
	f.Add("a=end-of-candidates\n")
	f.Fuzz(func(t *testing.T, body string) {
		fr, err := parseSDPFrag(body)
		if err != nil {
			if !errors.Is(err, errBadFrag) {
				t.Fatalf("error %v does not wrap errBadFrag", err)
			}
			return
		}
		if len(fr.Candidates) > maxFragCandidates || (fr.Ufrag == "") != (fr.Pwd == "") {
			t.Fatalf("out of limits: %+v", fr)
		}
		for _, c := range fr.Candidates {
			if !strings.HasPrefix(c.Value, "candidate:") || len(c.Value) > maxFragLine+len("candidate:") {
				t.Fatalf("candidate %q", c.Value)
			}
		}
		// What we send back parses again.
		if fr.Ufrag != "" {
			var vals []string
			for _, c := range fr.Candidates {
				vals = append(vals, c.Value)
			}
			if _, err := parseSDPFrag(marshalSDPFrag(fr.Ufrag, fr.Pwd, "0", vals)); err != nil {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

func TestReorderer(t *testing.T) {
	var r reorderer
	now := time.Unix(0, 0)
	var out []*rtp.Packet
	seqs := func(in ...uint16) []uint16 {
		var got []uint16
		for _, s := range in {
			var p []*rtp.Packet
			p, _ = r.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: s}}, now, out)
			for _, q := range p {
				got = append(got, q.SequenceNumber)
			}
		}
		return got
	}
	if got := seqs(65534, 0, 65535, 1, 1, 65535); !equal16(got, []uint16{65534, 65535, 0, 1}) {
		t.Fatalf("reordered across the wrap: %v", got)
	}
	// A gap is given up after reorderWait.
	seqs(3, 4)
	now = now.Add(reorderWait)
	if got := seqs(5); !equal16(got, []uint16{3, 4, 5}) {
		t.Fatalf("after the wait: %v", got)
	}
	if got := seqs(2, 6); !equal16(got, []uint16{6}) {
		t.Fatalf("a late packet must be dropped: %v", got)
	}
}

func equal16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A peer's timestamps cannot take a track back in time: such units are
// dropped and counted, equal ones pass.
func TestForwardOnly(t *testing.T) {
	it := &inTrack{}
	for i, tc := range []struct {
		dts  time.Duration
		want bool
	}{{100, true}, {120, true}, {120, true}, {90, false}, {-5, false}, {140, true}} {
		if got := it.forward(tc.dts); got != tc.want {
			t.Errorf("unit %d at %d: forward %v, want %v", i, tc.dts, got, tc.want)
		}
	}
	if it.errs != 2 {
		t.Errorf("%d units counted as gone back, want 2", it.errs)
	}
}
