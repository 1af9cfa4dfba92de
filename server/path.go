package server

import "strings"

// MaxPathLength caps a path name. Paths appear in URLs, logs, file names and HTML.
const MaxPathLength = 200

// ValidatePath returns a *PathError when p is not a valid stream path:
// one or more "/"-separated segments of [A-Za-z0-9_.-], none of them "." or
// "..", and at most MaxPathLength bytes in all.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return &PathError{Path: p, Reason: "it is empty"}
	case len(p) > MaxPathLength:
		return &PathError{Path: p[:MaxPathLength] + "...", Reason: "it is too long"}
	}
	segStart := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			seg := p[segStart:i]
			switch seg {
			case "":
				return &PathError{Path: p, Reason: "it has an empty segment"}
			case ".", "..":
				return &PathError{Path: p, Reason: "it has a . or .. segment"}
			}
			segStart = i + 1
			continue
		}
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return &PathError{Path: p, Reason: "it has a character that is not allowed"}
		}
	}
	return nil
}

// StreamKeyPrefix starts every stream key the registry makes, so a key
// given in place of a path segment can be told apart (and kept out of logs).
const StreamKeyPrefix = "sk_"

// LogPath returns p for a log line, with any segment that looks like a
// stream key replaced by "sk_***": a publisher may give its key as the
// path's last segment, and keys are never logged.
func LogPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, StreamKeyPrefix) {
			segs[i] = StreamKeyPrefix + "***"
		}
	}
	return strings.Join(segs, "/")
}
