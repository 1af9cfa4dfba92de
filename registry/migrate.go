package registry

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema is a list of forward-only migrations, migrations/NNNN_*.sql,
// applied in order at start. A small runner rather than tern or goose: the
// schema is two tables, and tern's migrate package would bring sprig and
// ten more modules into the binary for templating we do not use.
//
// Every node runs it at start: one transaction holding an advisory lock, so
// nodes starting together apply each migration once, and a failed one
// leaves nothing behind (PostgreSQL's DDL is transactional).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one file of migrations/.
type migration struct {
	version int
	name    string
	sql     string
}

// migrationLock is the advisory lock key the runner holds ("streamhub" in
// ASCII, big-endian, fits an int64).
const migrationLock int64 = 0x73747265616d68

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("registry: migration file %s is not NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFiles, "migrations/"+e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := range out {
		if out[i].version != i+1 {
			return nil, fmt.Errorf("registry: migration %s: versions must be 1, 2, 3… without gaps", out[i].name)
		}
	}
	return out, nil
}

// SchemaVersion is the schema version this build migrates PostgreSQL to.
func SchemaVersion() int {
	ms, _ := migrations()
	return len(ms)
}

// migrate brings the schema to SchemaVersion and returns the versions it
// applied. A database with a newer schema (a newer streamhub migrated it)
// is refused rather than used half understood.
func migrate(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	var applied []int
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS streamhub_schema_migrations (
			version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var cur int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM streamhub_schema_migrations").Scan(&cur); err != nil {
			return err
		}
		if cur > len(ms) {
			return fmt.Errorf("the database's schema is version %d, newer than this streamhub's (%d): run a streamhub as new as the one that migrated it", cur, len(ms))
		}
		for _, m := range ms[cur:] {
			// No arguments: the simple protocol, which runs every
			// statement of the file.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO streamhub_schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return err
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}
