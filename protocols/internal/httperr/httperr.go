// Package httperr answers a refused HTTP request (HTTP-FLV, HLS) the same
// way for every hub error.
package httperr

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/streamhub/streamhub/server"
)

// Status maps a hub error to an HTTP status: 400 for a bad path, 401 for a
// wrong key, 404 when nothing is published, 503 when full or shutting down,
// else 500.
func Status(err error) int {
	var pe *server.PathError
	switch {
	case errors.As(err, &pe):
		return http.StatusBadRequest
	case errors.Is(err, server.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, server.ErrStreamNotFound):
		return http.StatusNotFound
	case errors.Is(err, server.ErrTooManyReaders), errors.Is(err, server.ErrHubClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Refuse answers with Status(err) and a one-line reason naming the path.
func Refuse(w http.ResponseWriter, path string, err error) {
	http.Error(w, fmt.Sprintf("%s: %v", path, err), Status(err))
}
