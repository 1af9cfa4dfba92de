//go:build e2e

package e2e

// The engines a cluster test runs for real, started by the test on free
// loopback ports in temporary directories and stopped after it. Missing
// engines fail the test (scripts/test.sh installs them), never skip it.

import (
	"testing"

	"github.com/streamhub/streamhub/internal/testpg"
)

// startPostgres starts a throwaway PostgreSQL 15 (as the postgres user when
// the test runs as root: PostgreSQL refuses root) and returns the URL of its
// database "postgres" over a unix socket, for streams.database. It is
// stopped and removed when the test ends.
func startPostgres(t testing.TB) string {
	t.Helper()
	return startPostgresServer(t).DSN
}

// startPostgresServer is startPostgres for a test that needs more: a
// database of its own per node (NewDatabase), the TCP URL (TCPDSN), an
// outage (Stop, Restart) or a server that does not answer (Pause, Resume).
func startPostgresServer(t testing.TB) *testpg.Server {
	t.Helper()
	return testpg.Start(t)
}
