package webrtc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A PATCH body (RFC 8840, application/trickle-ice-sdpfrag) carries the
// client's ICE credentials and candidates:
//
//	a=ice-ufrag:EsAw
//	a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1
//	m=audio 9 UDP/TLS/RTP/SAVPF 0
//	a=mid:0
//	a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host
//	a=end-of-candidates
//
// parseSDPFrag reads only what WHIP/WHEP use; other lines are ignored.

// Limits on a fragment: a PATCH is small, and everything in it came from a peer.
const (
	maxFragBytes      = 16 << 10
	maxFragCandidates = 64
	maxFragLine       = 1024
)

// errBadFrag is returned by parseSDPFrag; the wrapped text says what is wrong.
var errBadFrag = errors.New("webrtc: malformed trickle-ice-sdpfrag")

// sdpFrag is a parsed trickle-ice-sdpfrag.
type sdpFrag struct {
	// Ufrag and Pwd are the ICE credentials, "" when absent. A fragment
	// with credentials other than the session's asks for an ICE restart.
	Ufrag, Pwd string
	// Candidates are the candidate attributes' values ("candidate:..."),
	// each with the mid of the m-section it came in ("" before any).
	Candidates []fragCandidate
	// EndOfCandidates is set by a=end-of-candidates.
	EndOfCandidates bool
}

// fragCandidate is one a=candidate line.
type fragCandidate struct {
	Mid   string
	Value string // "candidate:<foundation> <component> <transport> ..."
}

// parseSDPFrag parses a trickle-ice-sdpfrag body. It returns an error
// wrapping errBadFrag that names the line for anything it cannot use.
func parseSDPFrag(body string) (*sdpFrag, error) {
	if len(body) > maxFragBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", errBadFrag, maxFragBytes)
	}
	f := &sdpFrag{}
	mid := ""
	for n, line := range strings.Split(body, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		if len(line) > maxFragLine {
			return nil, fmt.Errorf("%w: line %d is longer than %d bytes", errBadFrag, n+1, maxFragLine)
		}
		if len(line) < 2 || line[1] != '=' {
			return nil, fmt.Errorf("%w: line %d is not <type>=<value>", errBadFrag, n+1)
		}
		if line[0] == 'm' {
			mid = ""
			continue
		}
		if line[0] != 'a' {
			continue
		}
		name, value, _ := strings.Cut(line[2:], ":")
		switch name {
		case "ice-ufrag":
			if err := checkICEChars(value, 4, 256); err != nil {
				return nil, fmt.Errorf("%w: line %d: ice-ufrag %w", errBadFrag, n+1, err)
			}
			if f.Ufrag != "" && f.Ufrag != value {
				return nil, fmt.Errorf("%w: line %d: a second, different ice-ufrag", errBadFrag, n+1)
			}
			f.Ufrag = value
		case "ice-pwd":
			if err := checkICEChars(value, 22, 256); err != nil {
				return nil, fmt.Errorf("%w: line %d: ice-pwd %w", errBadFrag, n+1, err)
			}
			if f.Pwd != "" && f.Pwd != value {
				return nil, fmt.Errorf("%w: line %d: a second, different ice-pwd", errBadFrag, n+1)
			}
			f.Pwd = value
		case "mid":
			if value == "" || len(value) > 32 {
				return nil, fmt.Errorf("%w: line %d: mid must be 1-32 characters", errBadFrag, n+1)
			}
			mid = value
		case "candidate":
			if err := checkCandidate(value); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", errBadFrag, n+1, err)
			}
			if len(f.Candidates) == maxFragCandidates {
				return nil, fmt.Errorf("%w: more than %d candidates", errBadFrag, maxFragCandidates)
			}
			f.Candidates = append(f.Candidates, fragCandidate{Mid: mid, Value: "candidate:" + value})
		case "end-of-candidates":
			f.EndOfCandidates = true
		}
	}
	if (f.Ufrag == "") != (f.Pwd == "") {
		return nil, fmt.Errorf("%w: ice-ufrag and ice-pwd come together", errBadFrag)
	}
	return f, nil
}

// checkICEChars checks an ice-ufrag or ice-pwd: min to max ice-chars
// (ALPHA / DIGIT / "+" / "/"), RFC 8839.
func checkICEChars(s string, min, max int) error {
	if len(s) < min || len(s) > max {
		return fmt.Errorf("must be %d to %d characters (got %d)", min, max, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return fmt.Errorf("has a character outside A-Z a-z 0-9 + / at %d", i)
		}
	}
	return nil
}

// checkCandidate checks the shape of a candidate attribute value
// (foundation, component, transport, priority, address, port, "typ",
// type, ...); ICE parses it fully when it is added.
func checkCandidate(v string) error {
	f := strings.Fields(v)
	if len(f) < 8 || f[6] != "typ" {
		return errors.New("candidate needs <foundation> <component> <transport> <priority> <address> <port> typ <type>")
	}
	if _, err := strconv.ParseUint(f[1], 10, 8); err != nil {
		return errors.New("candidate component is not a number")
	}
	if _, err := strconv.ParseUint(f[3], 10, 32); err != nil {
		return errors.New("candidate priority is not a number")
	}
	if p, err := strconv.ParseUint(f[5], 10, 16); err != nil || (p == 0 && !strings.EqualFold(f[2], "tcp")) {
		return errors.New("candidate port is not a port number")
	}
	return nil
}

// marshalSDPFrag writes the server's answer to an ICE restart: its new
// credentials and candidates for the one bundled m-section.
func marshalSDPFrag(ufrag, pwd, mid string, candidates []string) string {
	var b strings.Builder
	b.WriteString("a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\n")
	if mid != "" {
		b.WriteString("a=mid:" + mid + "\r\n")
	}
	for _, c := range candidates {
		b.WriteString("a=" + c + "\r\n")
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String()
}
