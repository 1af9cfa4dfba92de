package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the set of registered streams in PostgreSQL, shared by every
// node of a cluster. Nothing is cached: every check asks the database (one
// indexed query), so a key created, rotated or deleted on any node counts
// on every node at once. Every query is bounded by the timeout; when the
// database does not answer, the error wraps ErrUnavailable (a publisher is
// refused with that reason, the API answers 503) and Health says down until
// a query or the background ping succeeds again; the pool reconnects by
// itself.
type Postgres struct {
	pool    *pgxpool.Pool
	prefix  string
	open    bool
	timeout time.Duration
	where   string // host:port/database, for messages (never the password)
	log     *slog.Logger

	mu       sync.Mutex // mu guards health and relisten
	health   Health
	relisten context.CancelFunc // ends the revocation listener's connection (nil: none)

	ctx    context.Context // ctx ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the pings and the revocation listener
}

// healthEvery is how often an idle registry pings PostgreSQL, so Health
// (the API, /metrics) follows an outage and its end without traffic.
var healthEvery = 5 * time.Second

// OpenPostgres connects to the PostgreSQL database o.Database names and
// migrates its schema. An unreachable database is an error naming it.
func OpenPostgres(ctx context.Context, o Options) (*Postgres, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(strings.TrimSpace(o.Database))
	if err != nil {
		return nil, fmt.Errorf("registry: streams.database is not a valid PostgreSQL URL: %w", err)
	}
	cfg.ConnConfig.ConnectTimeout = o.Timeout
	cfg.MinConns = 1
	cfg.HealthCheckPeriod = 30 * time.Second
	where := describe(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("registry: PostgreSQL at %s (streams.database): %w", where, err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	err = pool.Ping(pctx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("registry: PostgreSQL at %s (streams.database) is unreachable within %s: %w: start it, or correct the URL",
			where, o.Timeout, err)
	}
	// Migrating may wait for another node's migration (the lock): more
	// time than one query.
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	applied, err := migrate(mctx, pool)
	cancel()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("registry: migrating the schema of PostgreSQL at %s (streams.database): %w", where, err)
	}
	o.Logger.Info("stream registry in PostgreSQL", "database", where, "schema", SchemaVersion(), "migrationsApplied", len(applied))
	p := &Postgres{pool: pool, prefix: strings.Trim(o.Prefix, "/"), open: o.Open, timeout: o.Timeout, where: where,
		log: o.Logger.With("component", "registry"), health: Health{Backend: "postgres", Up: true, Since: time.Now()}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.ping()
	return p, nil
}

// describe names the database for messages: host, port and database, no
// user nor password.
func describe(c *pgx.ConnConfig) string {
	host := c.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	} else {
		host += ":" + strconv.Itoa(int(c.Port)) // a unix socket directory
	}
	return host + "/" + c.Database
}

// ping pings the database every healthEvery, so Health follows it
// without traffic.
func (p *Postgres) ping() {
	defer p.wg.Done()
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			p.do("a ping", func(ctx context.Context) error { return p.pool.Ping(ctx) }) //nolint:errcheck // Health says it
		}
	}
}

// Close stops the pings and the listener and closes the pool.
func (p *Postgres) Close() error {
	p.cancel()
	p.wg.Wait()
	p.pool.Close()
	return nil
}

// revokedChannel is the NOTIFY channel of rotated keys and deleted
// streams; the payload is the stream's id.
const revokedChannel = "streamhub_registry_revoked"

// Watch calls onRevoked with the id of every stream whose key is rotated or
// that is deleted, on any node (this one included), as PostgreSQL notifies
// it (LISTEN/NOTIFY, sent at commit): main kicks the stream's publisher if
// it is on this node. A notification sent while this node is cut from
// PostgreSQL is lost (that publisher goes on until it reconnects); the
// listener connects again by itself, and again whenever PostgreSQL
// answers after an outage (a half-open connection would wait forever).
func (p *Postgres) Watch(onRevoked func(id string)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			err := p.listen(onRevoked)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			p.log.Debug("stream registry: listening for revoked keys again", "error", err)
		}
	}()
}

// listen holds one connection of its own LISTENing until it fails, Close,
// or PostgreSQL answers again after an outage.
func (p *Postgres) listen(onRevoked func(id string)) error {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	p.mu.Lock()
	p.relisten = cancel
	p.mu.Unlock()
	actx, acancel := context.WithTimeout(ctx, p.timeout)
	defer acancel()
	c, err := p.pool.Acquire(actx)
	if err != nil {
		return err
	}
	conn := c.Hijack() // out of the pool: it waits for notifications only
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(cctx) //nolint:errcheck // gone anyway
		ccancel()
	}()
	if _, err := conn.Exec(actx, "LISTEN "+revokedChannel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if validID(n.Payload) { // never a path out of what a garbage payload says
			onRevoked(n.Payload)
		}
	}
}

// validID reports whether id is one newID could make.
func validID(id string) bool {
	if len(id) != 13 {
		return false
	}
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// Prefix returns the path prefix of registered streams (live).
func (p *Postgres) Prefix() string { return p.prefix }

// Path returns the hub path of the stream with id.
func (p *Postgres) Path(id string) string { return p.prefix + "/" + id }

// Health says whether PostgreSQL answered the last query or ping.
func (p *Postgres) Health() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// note records the outcome of a query: a change is logged once.
func (p *Postgres) note(down error) {
	p.mu.Lock()
	was := p.health.Up
	if (down == nil) == was {
		p.mu.Unlock()
		return
	}
	p.health = Health{Backend: "postgres", Up: down == nil, Since: time.Now()}
	if down != nil {
		p.health.Error = down.Error()
	} else if p.relisten != nil {
		p.relisten() // its connection may be half open since the outage
	}
	p.mu.Unlock()
	if down != nil {
		p.log.Warn("stream registry: PostgreSQL does not answer: publishers with stream keys and the streams API are refused until it does",
			"database", p.where, "error", down)
	} else {
		p.log.Info("stream registry: PostgreSQL answers again", "database", p.where)
	}
}

// do runs f with the query timeout. An error that is no answer from
// PostgreSQL (no connection, timeout, the server shutting down) marks the
// registry down and is returned wrapping ErrUnavailable; anything else,
// answers included, marks it up.
func (p *Postgres) do(what string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	err := f(ctx)
	if err == nil || answered(err) {
		p.note(nil)
		return err
	}
	p.note(err)
	return unavailable(what, p.timeout, err)
}

// answered reports whether err is PostgreSQL's answer rather than the lack
// of one.
func answered(err error) bool {
	if errors.Is(err, pgx.ErrNoRows) || errors.Is(err, ErrNotFound) || errors.Is(err, errIDTaken) {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	// Class 08: connection exception; 53: insufficient resources; 57:
	// operator intervention (shutdown, query canceled); 58: system error.
	switch pe.Code[:2] {
	case "08", "53", "57", "58":
		return false
	}
	return true
}

// errIDTaken is Create's retry signal: the random id was taken.
var errIDTaken = errors.New("registry: id taken")

// Create registers a stream named name and returns it with its key.
func (p *Postgres) Create(name string) (Stream, string, error) {
	name = strings.TrimSpace(name)
	if !validName(name) {
		return Stream{}, "", ErrBadName
	}
	key := newKey()
	h := hashKey(key)
	// PostgreSQL keeps microseconds: the stream returned is the one stored.
	s := Stream{Name: name, Created: time.Now().UTC().Truncate(time.Microsecond), KeyHash: h[:]}
	for range 5 {
		s.ID = newID()
		err := p.do("a create", func(ctx context.Context) error {
			tag, err := p.pool.Exec(ctx, `INSERT INTO streamhub_streams (id, name, created, key_hash)
				SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM streamhub_deleted_streams WHERE id = $1)
				ON CONFLICT DO NOTHING`, s.ID, s.Name, s.Created, s.KeyHash)
			if err == nil && tag.RowsAffected() == 0 {
				return errIDTaken
			}
			return err
		})
		if errors.Is(err, errIDTaken) {
			continue
		}
		if err != nil {
			return Stream{}, "", fmt.Errorf("registry: saving: %w", err)
		}
		return s, key, nil
	}
	return Stream{}, "", fmt.Errorf("registry: saving: %w five times", errIDTaken)
}

const streamColumns = "id, name, created, key_hash"

func scanStream(row pgx.Row) (Stream, error) {
	var s Stream
	err := row.Scan(&s.ID, &s.Name, &s.Created, &s.KeyHash)
	s.Created = s.Created.UTC()
	return s, err
}

// Get returns the stream with id, or ErrNotFound.
func (p *Postgres) Get(id string) (Stream, error) {
	var s Stream
	err := p.do("a lookup", func(ctx context.Context) error {
		var err error
		s, err = scanStream(p.pool.QueryRow(ctx, "SELECT "+streamColumns+" FROM streamhub_streams WHERE id = $1", id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Stream{}, ErrNotFound
	}
	return s, err
}

// List returns every stream, oldest first.
func (p *Postgres) List() ([]Stream, error) {
	var out []Stream
	err := p.do("a list", func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, "SELECT "+streamColumns+" FROM streamhub_streams ORDER BY created, id")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Stream, error) { return scanStream(r) })
		return err
	})
	if out == nil {
		out = []Stream{}
	}
	return out, err
}

// Delete removes the stream with id; its path stays closed.
func (p *Postgres) Delete(id string) error {
	err := p.do("a delete", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "DELETE FROM streamhub_streams WHERE id = $1", id)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return ErrNotFound
			}
			_, err = tx.Exec(ctx, "INSERT INTO streamhub_deleted_streams (id, deleted) VALUES ($1, now()) ON CONFLICT DO NOTHING", id)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", revokedChannel, id)
			return err
		})
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("registry: deleting: %w", err)
	}
	return err
}

// RotateKey gives the stream a new key and returns it.
func (p *Postgres) RotateKey(id string) (string, error) {
	key := newKey()
	h := hashKey(key)
	err := p.do("a key rotation", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "UPDATE streamhub_streams SET key_hash = $2 WHERE id = $1", id, h[:])
			if err == nil && tag.RowsAffected() == 0 {
				return ErrNotFound
			}
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", revokedChannel, id)
			return err
		})
	})
	if errors.Is(err, ErrNotFound) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("registry: saving: %w", err)
	}
	return key, nil
}

// KeyMatches reports, in constant time, whether key is the key of the
// stream with id.
func (p *Postgres) KeyMatches(id, key string) (bool, error) {
	s, err := p.Get(id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return hashMatches(s.KeyHash, key), nil
}

// Resolve maps a publisher's path and key to the hub path it publishes on
// (see resolve): one query, bounded by the timeout.
func (p *Postgres) Resolve(path, key string) (string, string, bool, error) {
	return resolve(p.prefix, p.open, path, key, func(first string) (lookup, error) {
		var l lookup
		var hash []byte // nil matches no key_hash
		if strings.HasPrefix(first, keyPrefix) {
			h := hashKey(first)
			hash = h[:]
		}
		err := p.do("a publish check", func(ctx context.Context) error {
			l = lookup{}
			rows, err := p.pool.Query(ctx, `SELECT id, key_hash, false FROM streamhub_streams WHERE id = $1 OR key_hash = $2
				UNION ALL SELECT id, NULL, true FROM streamhub_deleted_streams WHERE id = $1`, first, hash)
			if err != nil {
				return err
			}
			var (
				id      string
				kh      []byte
				deleted bool
			)
			_, err = pgx.ForEachRow(rows, []any{&id, &kh, &deleted}, func() error {
				switch {
				case deleted:
					l.deleted = true
				case hash != nil && bytes.Equal(kh, hash):
					l.byKey = id
				case id == first:
					l.registered, l.keyHash = true, bytes.Clone(kh)
				}
				return nil
			})
			return err
		})
		return l, err
	})
}

// CopyReport counts what Copy did.
type CopyReport struct {
	// Streams and Deleted are the bbolt file's streams and deleted ids.
	Streams, Deleted int
	// Copied and DeletedCopied were written to PostgreSQL; the others
	// were there already (an earlier copy, or a stream of that id
	// created, rotated or deleted since, which is kept as it is).
	Copied, DeletedCopied int
}

// Copy writes every stream of from (with its key hash, so its key keeps
// working) and every deleted id into p, in one transaction. What p has
// already is kept: running it again copies nothing twice.
func (p *Postgres) Copy(ctx context.Context, from *Bolt) (CopyReport, error) {
	streams, _ := from.List()
	deleted := from.Deleted()
	rep := CopyReport{Streams: len(streams), Deleted: len(deleted)}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for _, id := range deleted {
			tag, err := tx.Exec(ctx, "INSERT INTO streamhub_deleted_streams (id, deleted) VALUES ($1, now()) ON CONFLICT DO NOTHING", id)
			if err != nil {
				return err
			}
			rep.DeletedCopied += int(tag.RowsAffected())
		}
		for _, s := range streams {
			// Never revives a stream deleted in PostgreSQL, nor takes a
			// key hash another stream has.
			tag, err := tx.Exec(ctx, `INSERT INTO streamhub_streams (id, name, created, key_hash)
				SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM streamhub_deleted_streams WHERE id = $1)
				ON CONFLICT DO NOTHING`, s.ID, s.Name, s.Created, s.KeyHash)
			if err != nil {
				return fmt.Errorf("stream %s: %w", s.ID, err)
			}
			rep.Copied += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return CopyReport{}, fmt.Errorf("registry: copying into PostgreSQL at %s: %w", p.where, err)
	}
	return rep, nil
}
