package registry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/streamhub/streamhub/server"
)

// Registry is the set of registered streams, in whichever database holds
// them (Bolt: an embedded file; Postgres: shared by every node). main, the
// API and the hub's key check (Resolve, as HubConfig.ResolvePublish) use
// it. Every method is safe for concurrent use; a method that asks a remote
// database returns an error wrapping ErrUnavailable when the database does
// not answer within the query timeout.
type Registry interface {
	// Prefix returns the path prefix of registered streams (live).
	Prefix() string
	// Path returns the hub path of the stream with id.
	Path(id string) string
	// Create registers a stream named name and returns it with its key,
	// which is not kept anywhere in clear: the caller must hand it over
	// now. ErrBadName for a bad name.
	Create(name string) (Stream, string, error)
	// Get returns the stream with id, or ErrNotFound.
	Get(id string) (Stream, error)
	// List returns every stream, oldest first.
	List() ([]Stream, error)
	// Delete removes the stream with id (ErrNotFound): its path stays
	// closed.
	Delete(id string) error
	// RotateKey gives the stream a new key and returns it; the old one
	// stops working at once.
	RotateKey(id string) (string, error)
	// KeyMatches reports, in constant time, whether key is the key of the
	// stream with id.
	KeyMatches(id, key string) (bool, error)
	// Resolve maps a publisher's path and key to the hub path it
	// publishes on and the key that goes with it, and reports whether the
	// registry vouched for it (HubConfig.ResolvePublish).
	Resolve(path, key string) (newPath, newKey string, vouched bool, err error)
	// Health says whether the database answers now.
	Health() Health
	// Watch calls onRevoked (from a goroutine of its own) with the id of
	// a stream whose key was rotated or that was deleted through another
	// node, so this node can kick its publisher; bbolt, one node, never
	// calls it. Call it once, before Close.
	Watch(onRevoked func(id string))
	// Close closes the database.
	Close() error
}

var (
	_ Registry = (*Bolt)(nil)
	_ Registry = (*Postgres)(nil)
)

// ErrUnavailable is wrapped by the errors of a database that did not answer
// (PostgreSQL down, or slower than the query timeout). It is
// server.ErrUnavailable, so the hub refuses a publisher with the reason
// without counting it as a wrong key.
var ErrUnavailable = server.ErrUnavailable

// Health is the state of the registry's database, for the API and /metrics.
type Health struct {
	// Backend is "bbolt" or "postgres".
	Backend string `json:"backend"`
	// Up is true while the database answers.
	Up bool `json:"up"`
	// Error is why it is down (empty when up).
	Error string `json:"error,omitempty"`
	// Since is when it went up or down (zero for bbolt).
	Since time.Time `json:"since,omitzero"`
}

// Options are the settings of New.
type Options struct {
	// Database is a bbolt file path, or a postgres:// or postgresql:// URL
	// (streams.database).
	Database string
	// Prefix is the path prefix of registered streams (streams.prefix).
	Prefix string
	// Open lets anyone publish on unregistered paths (streams.open).
	Open bool
	// Timeout bounds every PostgreSQL query (streams.databaseTimeout);
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// Logger receives PostgreSQL's up and down transitions (once each);
	// nil means slog.Default().
	Logger *slog.Logger
}

// DefaultTimeout bounds a PostgreSQL query when Options.Timeout is 0.
const DefaultTimeout = 2 * time.Second

// IsPostgres reports whether database names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a bbolt file.
func IsPostgres(database string) bool {
	d := strings.ToLower(strings.TrimSpace(database))
	return strings.HasPrefix(d, "postgres://") || strings.HasPrefix(d, "postgresql://")
}

// CheckURL reports what is wrong with a PostgreSQL URL for
// streams.database, without connecting (the password is never in the
// message).
func CheckURL(database string) error {
	if _, err := pgx.ParseConfig(strings.TrimSpace(database)); err != nil {
		return fmt.Errorf("not a valid PostgreSQL URL: %w", err)
	}
	return nil
}

// New opens the registry streams.database names: PostgreSQL for a
// postgres:// URL (its schema migrated first), else the bbolt file.
func New(ctx context.Context, o Options) (Registry, error) {
	if IsPostgres(o.Database) {
		return OpenPostgres(ctx, o)
	}
	return Open(o.Database, o.Prefix, o.Open)
}

// lookup is what a database knows about the first segment of a path under
// the prefix: whose key it is, whether it is a stream's id (and that
// stream's key hash), whether it is a deleted stream's id.
type lookup struct {
	byKey      string // the id of the stream whose key is the segment
	registered bool
	keyHash    []byte // of the stream whose id is the segment
	deleted    bool
}

// resolve is Resolve for every backend; find asks the database about the
// first segment. Resolving its own answer gives the same answer.
//   - <prefix>/<key>: the stream of that key, at <prefix>/<id>;
//   - <prefix>/<id> with ?key=<key>: that stream, if the key is its own;
//     without it, ErrWrongKey, also when publishing is open;
//   - any other path: itself when publishing is open, else ErrKeyRequired.
func resolve(prefix string, open bool, path, key string, find func(first string) (lookup, error)) (string, string, bool, error) {
	if rest, ok := strings.CutPrefix(path, prefix+"/"); ok {
		first, sub, _ := strings.Cut(rest, "/")
		l, err := find(first)
		if err != nil {
			return "", "", false, err
		}
		switch {
		case l.byKey != "" && sub == "":
			return prefix + "/" + l.byKey, first, true, nil
		case l.byKey != "":
			return prefix + "/" + l.byKey + "/" + sub, first, true, nil // the owner's own sub-path
		case l.registered && hashMatches(l.keyHash, key):
			return path, key, true, nil
		case l.registered:
			// Its path and everything under it (where the ladder's rungs
			// and a watch page's ?rung= play) are the owner's.
			return "", "", false, ErrWrongKey
		case l.deleted:
			return "", "", false, ErrDeleted
		case strings.HasPrefix(first, keyPrefix):
			return "", "", false, ErrWrongKey // a key, but no stream's: never publish on a path named after it
		}
	}
	if open {
		return path, key, false, nil
	}
	return "", "", false, ErrKeyRequired
}

// unavailable wraps a database error that is not an answer.
func unavailable(what string, timeout time.Duration, err error) error {
	return fmt.Errorf("%w: the stream registry (PostgreSQL, streams.database) did not answer %s within %s: %v", ErrUnavailable, what, timeout, err)
}
