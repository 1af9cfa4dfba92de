package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamhub/streamhub/registry"
)

// newRegistryCmd is `streamhub registry`: the stream registry's tools.
func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "Manage the stream registry (streams.database)"}
	var from, to string
	var timeout time.Duration
	migrate := &cobra.Command{
		Use:   "migrate --from FILE --to postgres://…",
		Short: "Copy every stream of a bbolt file, with its key hash (its key keeps working), into PostgreSQL",
		Long: `Copies every stream of the bbolt file FILE (streams.database of a single node), with its id, name,
creation date and key hash, and the ids of its deleted streams (their paths stay closed), into the
PostgreSQL database of the URL, migrating its schema first. What PostgreSQL has already is kept, so
running it again copies nothing twice. Stop the server that uses FILE first (the file is locked while
it runs), then set streams.database to the URL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return migrateRegistry(cmd.Context(), cmd.OutOrStdout(), from, to, timeout)
		},
	}
	migrate.Flags().StringVar(&from, "from", "", "the bbolt file (streams.database of the node)")
	migrate.Flags().StringVar(&to, "to", "", "the PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE")
	migrate.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "bound on connecting to PostgreSQL")
	migrate.MarkFlagRequired("from") //nolint:errcheck // the flag exists
	migrate.MarkFlagRequired("to")   //nolint:errcheck // the flag exists
	cmd.AddCommand(migrate)
	return cmd
}

func migrateRegistry(ctx context.Context, out io.Writer, from, to string, timeout time.Duration) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if !registry.IsPostgres(to) {
		return fmt.Errorf("--to must be a postgres:// or postgresql:// URL")
	}
	if _, err := os.Stat(from); err != nil {
		return fmt.Errorf("--from: %w", err) // bbolt would create an empty file
	}
	bolt, err := registry.Open(from, "live", false)
	if err != nil {
		return err
	}
	defer bolt.Close()
	pg, err := registry.OpenPostgres(ctx, registry.Options{Database: to, Prefix: "live", Timeout: timeout,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer pg.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rep, err := pg.Copy(cctx, bolt)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "streams: %d in %s, %d copied, %d already in PostgreSQL\n", rep.Streams, from, rep.Copied, rep.Streams-rep.Copied)
	fmt.Fprintf(out, "deleted streams: %d in %s, %d copied, %d already in PostgreSQL\n", rep.Deleted, from, rep.DeletedCopied,
		rep.Deleted-rep.DeletedCopied)
	return nil
}
