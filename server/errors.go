package server

import (
	"errors"
	"fmt"
)

// Errors returned by the hub. Protocols map them to their own status codes.
var (
	// ErrStreamNotFound is returned by Hub.Read when nobody publishes on the path.
	ErrStreamNotFound = errors.New("server: stream not found: nobody is publishing on this path")
	// ErrPathBusy is returned by Hub.Publish when the path already has a publisher.
	ErrPathBusy = errors.New("server: path is busy: another publisher is live on it; stop it first or use another path")
	// ErrUnauthorized is returned by Hub.Publish and Hub.CheckRead when the
	// path's publish or read key does not match.
	ErrUnauthorized = errors.New("server: wrong or missing key (give it as ?key=..., as the RTSP password, or as SRT s=...)")
	// ErrTooManyFailures is returned instead of checking a key when the
	// peer's address has failed too often (auth.failureBudget). It wraps
	// ErrUnauthorized, so protocols answer it as a wrong key.
	ErrTooManyFailures = fmt.Errorf("%w: too many failed attempts from this address (auth.failureBudget): wait a minute and try again", ErrUnauthorized)
	// ErrRungPath is returned by Hub.Publish for a path that is a rung of
	// a live source's bitrate ladder (PathConfig.RungOf).
	ErrRungPath = errors.New("server: this path is a rung of a live stream's bitrate ladder (<path>/<rung>): publish to another path")
	// ErrTooManyReaders is returned by Hub.Read when the path has maxReaders readers.
	ErrTooManyReaders = errors.New("server: too many readers on this path (paths.*.maxReaders)")
	// ErrStreamClosed is returned by Reader.Next once the stream has ended and
	// every unit before the end was delivered.
	ErrStreamClosed = errors.New("server: stream closed")
	// ErrReaderTooSlow is returned by Reader.Next when the reader lagged behind
	// live for longer than paths.*.readerLagBound.
	ErrReaderTooSlow = errors.New("server: reader too slow: it lagged behind live past readerLagBound")
	// ErrReaderClosed is returned by Reader.Next after Reader.Close.
	ErrReaderClosed = errors.New("server: reader closed")
	// ErrNoTracks is returned by Hub.Publish when no track is given.
	ErrNoTracks = errors.New("server: publish needs at least one track")
	// ErrHubClosed is returned by Hub.Publish and Hub.Read after Hub.Close.
	ErrHubClosed = errors.New("server: shutting down")
	// ErrUnavailable is wrapped by a HubConfig.ResolvePublish error that
	// is no answer about the key (the stream registry's database is down
	// or slow): Hub.Publish returns it as is, not as ErrUnauthorized, so
	// the publisher learns why and its address spends no failure.
	ErrUnavailable = errors.New("server: unavailable")
)

// PathError is returned for a path name that is not allowed.
type PathError struct {
	Path   string
	Reason string
}

// Error says what is wrong and what is allowed.
func (e *PathError) Error() string {
	return fmt.Sprintf("server: invalid path %q: %s; a path is 1-%d characters of segments made of A-Z a-z 0-9 _ . - separated by /, and no segment may be . or ..",
		LogPath(e.Path), e.Reason, MaxPathLength)
}
