// Package registry keeps the streams a streamer created, each with a
// public id (in its path and its viewers' URLs) and a secret stream key
// (for publishing), in a database so they survive restarts: an embedded
// bbolt file (Bolt, one node) or PostgreSQL (Postgres, shared by every node
// of a cluster), both behind the Registry interface.
//
//	POST /api/v1/streams ─▶ Create ─▶ bbolt file or PostgreSQL (id → name, sha256(key))
//	publish rtmp://HOST/live/<key> ─▶ Resolve ─▶ live/<id>
//
// Keys are 128 random bits, stored as their SHA-256 only and compared in
// constant time; they are never logged.
package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"go.etcd.io/bbolt"

	"github.com/streamhub/streamhub/server"
)

// Errors returned by the registry.
var (
	// ErrNotFound is returned for an id no stream has.
	ErrNotFound = errors.New("registry: no stream with this id")
	// ErrBadName is returned by Create for an empty, too long or
	// control-character name.
	ErrBadName = errors.New("registry: a stream name is 1 to 100 printable characters")
	// ErrWrongKey is returned by Resolve when a registered stream's path is
	// published without its key.
	ErrWrongKey = errors.New("registry: wrong or missing stream key (publish to rtmp://HOST/<prefix>/<key>, or add ?key=<key>)")
	// ErrKeyRequired is returned by Resolve for an unregistered path when
	// publishing needs a key (streams.open: false).
	ErrKeyRequired = errors.New("registry: publishing needs a stream key: create a stream (POST /api/v1/streams or the /broadcast page) and publish with its key")
	// ErrDeleted is returned by Resolve for the path of a deleted stream.
	ErrDeleted = errors.New("registry: this stream was deleted: create a new one")
	// ErrLocked is returned by Open when another process holds the database
	// file (another streamhub on the same streams.database).
	ErrLocked = errors.New("the file is locked")
)

// keyPrefix starts every stream key, so a key is never taken for an id
// (and server.LogPath keeps it out of logs).
const keyPrefix = server.StreamKeyPrefix

var (
	bucket = []byte("streams")
	// deletedBucket keeps the ids of deleted streams: their paths stay
	// closed, so nobody takes over a deleted stream's viewers or links.
	deletedBucket = []byte("deleted")
)

// Stream is one registered stream. Its key is not in it: only its hash is
// kept.
type Stream struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// KeyHash is SHA-256 of the key.
	KeyHash []byte `json:"keyHash"`
}

// Bolt is the set of registered streams in an embedded bbolt file, kept in
// memory too (one process owns the file). It is safe for concurrent use.
type Bolt struct {
	db     *bbolt.DB
	prefix string
	open   bool

	mu      sync.RWMutex // mu guards byID, byKey and deleted, the database's contents in memory
	byID    map[string]*Stream
	byKey   map[[sha256.Size]byte]*Stream
	deleted map[string]bool
}

// Open opens (or creates) the database file. Streams live under prefix
// (live: live/<id>); open allows publishing on unregistered paths without
// a key (a single-user setup).
func Open(file, prefix string, open bool) (*Bolt, error) {
	db, err := bbolt.Open(file, 0o600, &bbolt.Options{Timeout: time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		// bbolt says only "timeout": the file is locked (flock) by a
		// process that has it open, most likely another streamhub.
		return nil, fmt.Errorf("registry: %s (streams.database) is locked by another process: is another streamhub running with this file? "+
			"Stop it, or give this server a streams.database of its own: %w", file, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: opening %s (streams.database): %w", file, err)
	}
	r := &Bolt{db: db, prefix: strings.Trim(prefix, "/"), open: open, byID: map[string]*Stream{}, byKey: map[[sha256.Size]byte]*Stream{},
		deleted: map[string]bool{}}
	err = db.Update(func(tx *bbolt.Tx) error {
		d, err := tx.CreateBucketIfNotExists(deletedBucket)
		if err != nil {
			return err
		}
		d.ForEach(func(k, _ []byte) error { r.deleted[string(k)] = true; return nil }) //nolint:errcheck // never fails
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			s := &Stream{}
			if err := json.Unmarshal(v, s); err != nil || s.ID != string(k) || len(s.KeyHash) != sha256.Size {
				return fmt.Errorf("stream %q: a damaged record", k)
			}
			r.byID[s.ID] = s
			r.byKey[[sha256.Size]byte(s.KeyHash)] = s
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("registry: reading %s: %w", file, err)
	}
	return r, nil
}

// Close closes the database.
func (r *Bolt) Close() error { return r.db.Close() }

// Path returns the hub path of the stream with id.
func (r *Bolt) Path(id string) string { return r.prefix + "/" + id }

// Prefix returns the path prefix of registered streams (live).
func (r *Bolt) Prefix() string { return r.prefix }

func hashKey(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

func newKey() string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck // never fails on Linux
	return keyPrefix + hex.EncodeToString(b[:])
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	var b [8]byte
	rand.Read(b[:]) //nolint:errcheck // never fails on Linux
	return idEncoding.EncodeToString(b[:])
}

func validName(name string) bool {
	if name == "" || len([]rune(name)) > 100 {
		return false
	}
	for _, c := range name {
		if unicode.IsControl(c) {
			return false
		}
	}
	return true
}

func (r *Bolt) put(s *Stream) error {
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return r.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put([]byte(s.ID), v) })
}

// Create registers a stream named name and returns it with its key, which
// is not kept anywhere in clear: the caller must hand it over now.
func (r *Bolt) Create(name string) (Stream, string, error) {
	name = strings.TrimSpace(name)
	if !validName(name) {
		return Stream{}, "", ErrBadName
	}
	key := newKey()
	h := hashKey(key)
	s := &Stream{ID: newID(), Name: name, Created: time.Now().UTC(), KeyHash: h[:]}
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.byID[s.ID] != nil || r.deleted[s.ID] {
		s.ID = newID()
	}
	if err := r.put(s); err != nil {
		return Stream{}, "", fmt.Errorf("registry: saving: %w", err)
	}
	r.byID[s.ID] = s
	r.byKey[h] = s
	return *s, key, nil
}

// Get returns the stream with id, or ErrNotFound.
func (r *Bolt) Get(id string) (Stream, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := r.byID[id]
	if s == nil {
		return Stream{}, ErrNotFound
	}
	return *s, nil
}

// List returns every stream, oldest first.
func (r *Bolt) List() ([]Stream, error) {
	r.mu.RLock()
	out := make([]Stream, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, *s)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Stream) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Deleted returns the ids of the deleted streams, whose paths stay closed.
func (r *Bolt) Deleted() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.deleted))
	for id := range r.deleted {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Watch does nothing: one process owns the file, and its API kicks the
// publisher of a stream it rotates or deletes itself.
func (r *Bolt) Watch(func(id string)) {}

// Health reports the file as up: once open, it does not go away.
func (r *Bolt) Health() Health { return Health{Backend: "bbolt", Up: true} }

// Delete removes the stream with id.
func (r *Bolt) Delete(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.byID[id]
	if s == nil {
		return ErrNotFound
	}
	err := r.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(deletedBucket).Put([]byte(id), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		return tx.Bucket(bucket).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("registry: deleting: %w", err)
	}
	r.deleted[id] = true
	delete(r.byID, id)
	delete(r.byKey, [sha256.Size]byte(s.KeyHash))
	return nil
}

// RotateKey gives the stream a new key and returns it; the old one stops
// working at once.
func (r *Bolt) RotateKey(id string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.byID[id]
	if s == nil {
		return "", ErrNotFound
	}
	key := newKey()
	h := hashKey(key)
	n := *s
	n.KeyHash = h[:]
	if err := r.put(&n); err != nil {
		return "", fmt.Errorf("registry: saving: %w", err)
	}
	delete(r.byKey, [sha256.Size]byte(s.KeyHash))
	r.byID[id] = &n
	r.byKey[h] = &n
	return key, nil
}

// KeyMatches reports, in constant time, whether key is the key of the
// stream with id.
func (r *Bolt) KeyMatches(id, key string) (bool, error) {
	r.mu.RLock()
	s := r.byID[id]
	r.mu.RUnlock()
	return s != nil && hashMatches(s.KeyHash, key), nil
}

// hashMatches reports, in constant time, whether key hashes to hash.
func hashMatches(hash []byte, key string) bool {
	if key == "" {
		return false
	}
	h := hashKey(key)
	return subtle.ConstantTimeCompare(h[:], hash) == 1
}

// Resolve maps a publisher's path and key to the hub path it publishes on
// (see resolve).
func (r *Bolt) Resolve(path, key string) (string, string, bool, error) {
	return resolve(r.prefix, r.open, path, key, func(first string) (lookup, error) {
		r.mu.RLock()
		defer r.mu.RUnlock()
		var l lookup
		if strings.HasPrefix(first, keyPrefix) {
			if s := r.byKey[hashKey(first)]; s != nil {
				l.byKey = s.ID
			}
		}
		if s := r.byID[first]; s != nil {
			l.registered, l.keyHash = true, s.KeyHash
		}
		l.deleted = r.deleted[first]
		return l, nil
	})
}
