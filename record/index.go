package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// Segment is one recorded file as the index knows it.
type Segment struct {
	Path  string
	Start time.Time
	// End is where the media ends (for a growing segment: where it ended
	// when the index was last written).
	End      time.Time
	File     string // relative to record.directory
	Size     int64
	Codecs   string // "H264,AAC"
	Complete bool
}

// Duration is End - Start.
func (s Segment) Duration() time.Duration { return s.End.Sub(s.Start) }

// SegmentIndex is what the recorder needs of an index; Index (bbolt) is
// the one there is. Another store (the registry's database when
// clustered) implements the same calls.
type SegmentIndex interface {
	Put(s Segment) error
	Delete(path string, start time.Time) error
	Get(path string, start time.Time) (Segment, bool)
	List(path string, from, to time.Time, limit int) ([]Segment, error)
	All(fn func(Segment) bool) error
	Close() error
}

var _ SegmentIndex = (*Index)(nil)

// Index maps (path, start) to segments in a bbolt file of its own, so that
// listing a time range is a seek and a short walk, not a directory scan.
// Keys are the path, a zero byte (never in a path) and the start in Unix
// nanoseconds, big-endian: the segments of a path are adjacent and in time
// order. It is safe for concurrent use.
type Index struct {
	db *bbolt.DB
}

var bucketSegments = []byte("segments")

// ErrIndexLocked is returned when another process holds the index.
var ErrIndexLocked = errors.New("record: the index is locked by another process: is another streamhub using this record.directory?")

// OpenIndex opens (creating it if needed) the index in file.
func OpenIndex(file string) (*Index, error) {
	db, err := bbolt.Open(file, 0o600, &bbolt.Options{Timeout: time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("%w (%s)", ErrIndexLocked, file)
	}
	if err != nil {
		return nil, fmt.Errorf("record: opening the index %s: %w", file, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSegments)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("record: index %s: %w", file, err)
	}
	return &Index{db: db}, nil
}

// Close closes the file.
func (x *Index) Close() error { return x.db.Close() }

func segKey(path string, start time.Time) []byte {
	k := make([]byte, 0, len(path)+9)
	k = append(k, path...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(unixNano(start)))
}

// unixNano is t in Unix nanoseconds, clamped to what an int64 holds from
// 1970 on (a query may give any time).
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, 1<<63-1)):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

func encodeSeg(s Segment) []byte {
	b := make([]byte, 0, 32+len(s.File)+len(s.Codecs))
	b = append(b, 1) // version
	b = binary.BigEndian.AppendUint64(b, uint64(s.End.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(s.Size))
	c := byte(0)
	if s.Complete {
		c = 1
	}
	b = append(b, c)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.File)))
	b = append(b, s.File...)
	b = append(b, byte(len(s.Codecs)))
	return append(b, s.Codecs...)
}

func decodeSeg(k, v []byte) (Segment, bool) { return decodeSegOf("", k, v) }

// decodeSegOf decodes an entry of path ("": take it from the key), so a
// listing of one path does not copy the path once per segment.
func decodeSegOf(path string, k, v []byte) (Segment, bool) {
	var s Segment
	if len(k) < 9 || k[len(k)-9] != 0 || len(v) < 20 || v[0] != 1 {
		return s, false
	}
	s.Path = path
	if path == "" {
		s.Path = string(k[:len(k)-9])
	}
	s.Start = time.Unix(0, int64(binary.BigEndian.Uint64(k[len(k)-8:]))).UTC()
	s.End = time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()
	s.Size = int64(binary.BigEndian.Uint64(v[9:17]))
	s.Complete = v[17] == 1
	n := int(binary.BigEndian.Uint16(v[18:20]))
	if len(v) < 20+n+1 {
		return s, false
	}
	s.File = string(v[20 : 20+n])
	m := int(v[20+n])
	if len(v) < 21+n+m {
		return s, false
	}
	s.Codecs = internCodecs(v[21+n : 21+n+m])
	return s, true
}

// internCodecs returns the common codec lists without an allocation.
func internCodecs(b []byte) string {
	switch string(b) {
	case "H264,AAC":
		return "H264,AAC"
	case "H264":
		return "H264"
	case "AAC":
		return "AAC"
	case "H265,AAC":
		return "H265,AAC"
	case "H264,Opus":
		return "H264,Opus"
	}
	return string(b)
}

// Put adds or replaces the segment of s.Path starting at s.Start.
func (x *Index) Put(s Segment) error {
	return x.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSegments).Put(segKey(s.Path, s.Start), encodeSeg(s))
	})
}

// Get returns the segment of path starting at start, false if none.
func (x *Index) Get(path string, start time.Time) (Segment, bool) {
	var s Segment
	ok := false
	x.db.View(func(tx *bbolt.Tx) error { //nolint:errcheck // a failed read finds nothing
		k := segKey(path, start)
		if v := tx.Bucket(bucketSegments).Get(k); v != nil {
			s, ok = decodeSegOf(path, k, v)
		}
		return nil
	})
	return s, ok
}

// Delete removes the segment of path starting at start.
func (x *Index) Delete(path string, start time.Time) error {
	return x.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSegments).Delete(segKey(path, start))
	})
}

// List returns the segments of path that overlap [from, to), in time
// order, at most limit of them (0: no limit). Segments of one path do not
// overlap, so the only one starting before from that can reach into the
// range is the one just before it.
func (x *Index) List(path string, from, to time.Time, limit int) ([]Segment, error) {
	var out []Segment
	prefix := append([]byte(path), 0)
	err := x.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketSegments).Cursor()
		k, v := c.Seek(segKey(path, from))
		// One step back: a segment that started before from.
		if pk, pv := c.Prev(); pk != nil && hasPrefix(pk, prefix) {
			if s, ok := decodeSegOf(path, pk, pv); ok && s.End.After(from) {
				out = append(out, s)
			}
		}
		// Count first (keys only), so the result is allocated once: the
		// copies of a growing slice were most of a long listing's time.
		end := segKey(path, to)
		n := len(out)
		for k, _ = c.Seek(segKey(path, from)); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
			n++
			if limit > 0 && n >= limit {
				break
			}
		}
		out = append(make([]Segment, 0, n), out...)
		k, v = c.Seek(segKey(path, from))
		for ; k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			s, ok := decodeSegOf(path, k, v)
			if !ok {
				continue
			}
			if !s.Start.Before(to) {
				break
			}
			out = append(out, s)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}

func hasPrefix(k, p []byte) bool { return len(k) > len(p) && string(k[:len(p)]) == string(p) }

// All calls fn for every segment, by path then start, until fn returns
// false.
func (x *Index) All(fn func(Segment) bool) error {
	return x.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketSegments).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if s, ok := decodeSeg(k, v); ok && !fn(s) {
				return nil
			}
		}
		return nil
	})
}
