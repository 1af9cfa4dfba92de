package cluster

import (
	"log/slog"
	"testing"
	"time"
)

// FuzzParseEntry: whatever a node (or anyone with Redis access) writes
// into the live map, parseEntry neither panics nor accepts an entry
// without a valid node name and HOST:PORT relay.
func FuzzParseEntry(f *testing.F) {
	f.Add(`{"node":"origin-a","relay":"10.0.0.1:1935"}`)
	f.Add(`{"node":"a","relay":"[::1]:1935"}`)
	f.Add(`{"node":"","relay":""}`)
	f.Add(`{"node":"a","relay":"h:1","x":1}`)
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, v string) {
		e, err := parseEntry(v)
		if err != nil {
			return
		}
		if !nodeName.MatchString(e.Node) || len(e.Relay) > 255 || len(v) > maxEntry {
			t.Fatalf("accepted %q as %+v", v, e)
		}
	})
}

// FuzzRelayKey: a reader's key (peer input) never panics the check, and
// nothing but a key made with the secret for that path is let in.
func FuzzRelayKey(f *testing.F) {
	n := New(Config{Role: RoleOrigin, Node: "origin-a", Secret: "0123456789abcdef-secret"}, nil, nil, slog.New(slog.DiscardHandler))
	good := n.relayKey("live/x", time.Now())
	f.Add("live/x", good)
	f.Add("live/x", "cl1.edge.1.00")
	f.Add("live/x", "cl1...")
	f.Add("live/x", "cl1.a.b.c.d")
	f.Add("live/x", "viewer-key")
	f.Fuzz(func(t *testing.T, path, key string) {
		ok, err := n.RelayKey(path, key)
		if ok && err != nil {
			t.Fatal("ok with an error")
		}
		// Only the key made with the secret for that path opens it.
		if ok && (key != good || path != "live/x") {
			t.Fatalf("key %q let in for %q", key, path)
		}
	})
}
