package httpflv

import (
	"io"

	"github.com/streamhub/streamhub/protocols/internal/flv"
)

// Reader reads an FLV stream such as the one ServeHTTP writes; clients
// outside the protocols tree (the load tool, end-to-end tests) use it.
type Reader = flv.Reader

// Tag is one FLV tag read by a Reader.
type Tag = flv.Tag

// FLV tag types.
const (
	TagAudio  = flv.TagAudio
	TagVideo  = flv.TagVideo
	TagScript = flv.TagScript
)

// NewReader reads and checks the FLV header from r.
func NewReader(r io.Reader) (*Reader, error) { return flv.NewReader(r) }
