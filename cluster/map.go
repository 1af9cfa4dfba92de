package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The live map: one Redis key per published path, naming the origin that
// has it.
//
//	streamhub:live:<path> = {"node":"origin-a","relay":"10.0.0.1:1935"}  EX ttl
//
// An origin sets it with SET NX when it accepts a publisher (NX is what
// makes one publisher per path hold across origins), refreshes it every
// Config.Refresh only while the value is still its own (a Lua
// compare-and-refresh: a refresh never overwrites another origin's entry),
// and deletes it, again only if its own, when the publisher leaves. A
// crashed origin's entries expire after the TTL. Edges read it.

// keyPrefix starts every key of the live map.
const keyPrefix = "streamhub:live:"

// maxEntry bounds an entry's size: anything longer is garbage.
const maxEntry = 512

// Entry is one path's value in the live map.
type Entry struct {
	// Node is the origin's name (Config.Node).
	Node string `json:"node"`
	// Relay is its RTMP address as the other nodes reach it.
	Relay string `json:"relay"`
}

// ErrBadEntry is returned for a map value that is not an entry a node of
// this cluster would write.
var ErrBadEntry = errors.New("cluster: invalid live map entry")

// parseEntry decodes and checks a map value: a JSON object with a valid
// node name and a HOST:PORT relay address.
func parseEntry(v string) (Entry, error) {
	var e Entry
	if len(v) > maxEntry {
		return e, fmt.Errorf("%w: %d bytes", ErrBadEntry, len(v))
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Entry{}, fmt.Errorf("%w: trailing data", ErrBadEntry)
	}
	if !nodeName.MatchString(e.Node) {
		return Entry{}, fmt.Errorf("%w: node name", ErrBadEntry)
	}
	host, port, err := net.SplitHostPort(e.Relay)
	if err != nil || host == "" || port == "" || len(e.Relay) > 255 {
		return Entry{}, fmt.Errorf("%w: relay address", ErrBadEntry)
	}
	return e, nil
}

func (e Entry) encode() string {
	b, _ := json.Marshal(e) //nolint:errchkjson // two strings
	return string(b)
}

// refreshScript sets a new TTL on KEYS[1] only if it still holds ARGV[1]:
// 1 if refreshed, 0 if the key is gone or another origin's.
var refreshScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// deleteScript deletes KEYS[1] only if it still holds ARGV[1].
var deleteScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// swapScript replaces KEYS[1] by ARGV[2] only if it still holds ARGV[1]
// (taking over from an origin known to be dead).
var swapScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
	return 1
end
return 0`)

// liveMap is the live map in Redis as one node uses it. Every call is
// bounded by timeout.
type liveMap struct {
	rdb     *redis.Client
	self    string // this node's entry, encoded
	ttl     time.Duration
	timeout time.Duration
}

func redisOptions(s string, timeout time.Duration) (*redis.Options, error) {
	var o *redis.Options
	if strings.Contains(s, "://") {
		var err error
		if o, err = redis.ParseURL(s); err != nil {
			return nil, err
		}
	} else {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, err
		}
		o = &redis.Options{Addr: s}
	}
	// A slow or absent Redis must cost a publisher at most timeout: no
	// retries, every wait bounded, the context's deadline honoured.
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = timeout, timeout, timeout, timeout
	o.MaxRetries, o.DialerRetries = -1, 1
	o.ContextTimeoutEnabled = true
	o.Protocol = 2 // plain RESP2: nothing here needs RESP3, and Redis 6 speaks it too
	o.DisableIdentity = true
	return o, nil
}

func newLiveMap(rdb *redis.Client, self Entry, ttl, timeout time.Duration) *liveMap {
	return &liveMap{rdb: rdb, self: self.encode(), ttl: ttl, timeout: timeout}
}

func (m *liveMap) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, m.timeout)
}

// register sets path to this node with SET NX EX ttl. It returns true if
// this node has it now (set, or already its own), else the raw value of
// the other entry.
func (m *liveMap) register(ctx context.Context, path string) (bool, string, error) {
	ctx, cancel := m.ctx(ctx)
	defer cancel()
	ok, err := m.rdb.SetNX(ctx, keyPrefix+path, m.self, m.ttl).Result()
	if err != nil || ok {
		return ok, "", err
	}
	cur, err := m.rdb.Get(ctx, keyPrefix+path).Result()
	if errors.Is(err, redis.Nil) {
		// Gone in between (expired or deleted): try once more.
		ok, err = m.rdb.SetNX(ctx, keyPrefix+path, m.self, m.ttl).Result()
		return ok, "", err
	}
	if err != nil {
		return false, "", err
	}
	if cur == m.self {
		return true, "", m.refreshOne(ctx, path)
	}
	return false, cur, nil
}

func (m *liveMap) refreshOne(ctx context.Context, path string) error {
	_, err := refreshScript.Run(ctx, m.rdb, []string{keyPrefix + path}, m.self, m.ttl.Milliseconds()).Int()
	return err
}

// refresh renews path's entry if it is still this node's: false when it
// is gone or another's.
func (m *liveMap) refresh(ctx context.Context, path string) (bool, error) {
	ctx, cancel := m.ctx(ctx)
	defer cancel()
	n, err := refreshScript.Run(ctx, m.rdb, []string{keyPrefix + path}, m.self, m.ttl.Milliseconds()).Int()
	return n == 1, err
}

// unregister deletes path's entry if it is this node's.
func (m *liveMap) unregister(ctx context.Context, path string) error {
	ctx, cancel := m.ctx(ctx)
	defer cancel()
	return deleteScript.Run(ctx, m.rdb, []string{keyPrefix + path}, m.self).Err()
}

// takeOver replaces old (another origin's raw value) by this node's entry,
// if path still holds old.
func (m *liveMap) takeOver(ctx context.Context, path, old string) (bool, error) {
	ctx, cancel := m.ctx(ctx)
	defer cancel()
	n, err := swapScript.Run(ctx, m.rdb, []string{keyPrefix + path}, old, m.self, m.ttl.Milliseconds()).Int()
	return n == 1, err
}

// lookup returns path's raw entry; "" when the path is not in the map.
func (m *liveMap) lookup(ctx context.Context, path string) (string, error) {
	ctx, cancel := m.ctx(ctx)
	defer cancel()
	v, err := m.rdb.Get(ctx, keyPrefix+path).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

func (m *liveMap) ping(ctx context.Context) error {
	ctx, cancel := m.ctx(ctx)
	defer cancel()
	return m.rdb.Ping(ctx).Err()
}
