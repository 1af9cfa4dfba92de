package srt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/streamhub/streamhub/server"
)

// Mode is what a caller asks to do with a path.
type Mode int

// Modes of a stream ID.
const (
	ModePublish Mode = iota + 1
	ModeRead
)

func (m Mode) String() string {
	if m == ModePublish {
		return "publish"
	}
	return "read"
}

// StreamID is a parsed SRT stream ID.
type StreamID struct {
	Mode Mode
	Path string
	User string
	// Key is the path's publish or read key, from s= (access-control
	// syntax), the password of publish:PATH:USER:PASS, or ?key=.
	Key string
	// Query is the raw query of the short form (publish:PATH?key=K&role=backup),
	// or role=R from the access-control form's role= key, "" if none: the
	// hub reads role= from it (paths.*.standby).
	Query string
}

// maxStreamID bounds the stream ID (SRT allows 512 bytes).
const maxStreamID = 512

// errStreamIDSyntax is wrapped by every ParseStreamID error.
var errStreamIDSyntax = errors.New(`srt: bad streamid: use "publish:PATH", "read:PATH" or "#!::r=PATH,m=publish" (m=request to read)`)

// ParseStreamID parses the stream ID forms callers send:
//
//	publish:live/test              read:live/test
//	publish:live/test:USER:PASS    publish:live/test?key=KEY
//	#!::r=live/test,m=publish,u=USER,s=KEY    (m=request reads; m missing = request)
//	publish:live/test?role=backup             #!::r=live/test,m=publish,role=backup
//
// and ffmpeg's percent-encoded "%23!::..." (it does not decode the URL
// parameter). A missing or unparsable ID is an error, never a default path.
func ParseStreamID(raw string) (StreamID, error) {
	if raw == "" {
		return StreamID{}, fmt.Errorf("%w: the caller sent none", errStreamIDSyntax)
	}
	if len(raw) > maxStreamID {
		return StreamID{}, fmt.Errorf("%w: longer than %d bytes", errStreamIDSyntax, maxStreamID)
	}
	if strings.HasPrefix(raw, "%23") {
		dec, err := url.QueryUnescape(raw)
		if err != nil {
			return StreamID{}, fmt.Errorf("%w: bad percent-encoding", errStreamIDSyntax)
		}
		raw = dec
	}
	var id StreamID
	var err error
	if rest, ok := strings.CutPrefix(raw, "#!::"); ok {
		id, err = parseAccessControl(rest)
	} else {
		id, err = parseShort(raw)
	}
	if err != nil {
		return StreamID{}, err
	}
	id.Path = strings.Trim(id.Path, "/")
	if err := server.ValidatePath(id.Path); err != nil {
		return StreamID{}, err
	}
	return id, nil
}

// parseAccessControl parses the key=value list after "#!::".
func parseAccessControl(s string) (StreamID, error) {
	var id StreamID
	mode := ""
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return StreamID{}, fmt.Errorf("%w: %q is not key=value", errStreamIDSyntax, kv)
		}
		if seen[k] {
			return StreamID{}, fmt.Errorf("%w: key %q given twice", errStreamIDSyntax, k)
		}
		seen[k] = true
		switch k {
		case "r":
			id.Path = v
		case "m":
			mode = v
		case "u":
			id.User = v
		case "s":
			id.Key = v
		case "role":
			id.Query = "role=" + url.QueryEscape(v)
		case "h", "t":
			// host and type: accepted and ignored (t=stream is the only type we serve)
		default:
			// The spec reserves single letters and lets applications add
			// longer keys; unknown ones are ignored.
		}
	}
	if id.Path == "" {
		return StreamID{}, fmt.Errorf("%w: no r= (the path)", errStreamIDSyntax)
	}
	switch mode {
	case "publish":
		id.Mode = ModePublish
	case "request", "":
		id.Mode = ModeRead
	default:
		return StreamID{}, fmt.Errorf("%w: m=%s is not supported (publish or request)", errBadMode, mode)
	}
	return id, nil
}

// errBadMode is a well-formed stream ID with a mode we do not serve.
var errBadMode = errors.New("srt: bad mode")

// parseShort parses "publish:PATH[:USER:PASS]" and "read:PATH[...]".
func parseShort(s string) (StreamID, error) {
	mode, rest, ok := strings.Cut(s, ":")
	if !ok {
		return StreamID{}, fmt.Errorf("%w: got %q", errStreamIDSyntax, s)
	}
	var id StreamID
	switch mode {
	case "publish":
		id.Mode = ModePublish
	case "read":
		id.Mode = ModeRead
	default:
		return StreamID{}, fmt.Errorf("%w: %q is neither publish nor read", errStreamIDSyntax, mode)
	}
	if p, q, ok := strings.Cut(rest, "?"); ok {
		v, err := url.ParseQuery(q)
		if err != nil {
			return StreamID{}, fmt.Errorf("%w: bad query %q", errStreamIDSyntax, q)
		}
		rest, id.Key, id.Query = p, v.Get("key"), q
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 1:
		id.Path = parts[0]
	case 3:
		id.Path, id.User = parts[0], parts[1]
		if id.Key == "" {
			id.Key = parts[2]
		}
	default:
		return StreamID{}, fmt.Errorf("%w: expected %s:PATH or %s:PATH:USER:PASS", errStreamIDSyntax, mode, mode)
	}
	return id, nil
}
