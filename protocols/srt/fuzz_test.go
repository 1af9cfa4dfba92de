package srt

import (
	"bytes"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/streamhub/streamhub/media"
)

// checkWriter checks what ingest hands the hub.
type checkWriter struct {
	t       *testing.T
	lastDTS map[int]time.Duration
}

func (w *checkWriter) Write(u *media.Unit) {
	if u.Track == nil || len(u.Payload) == 0 {
		w.t.Fatalf("unit without track or payload")
	}
	if last, ok := w.lastDTS[u.Track.ID]; ok && u.DTS < last {
		w.t.Fatalf("track %d DTS went back: %v after %v", u.Track.ID, u.DTS, last)
	}
	w.lastDTS[u.Track.ID] = u.DTS
	for _, p := range u.Payload {
		if len(p) == 0 {
			w.t.Fatal("empty NALU or frame")
		}
	}
}

func (w *checkWriter) UpdateTrack(*media.Track) {}

// FuzzTSIngest feeds arbitrary MPEG-TS, as an SRT publisher could send it,
// through the demuxer and the unit building.
func FuzzTSIngest(f *testing.F) {
	ts := fixtureTS(f)
	f.Add(ts[:min(len(ts), 188*60)])
	f.Add(ts[188*10 : 188*40])
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &mpegts.Reader{R: bytes.NewReader(data)}
		if r.Initialize() != nil {
			return
		}
		in, err := newIngest(r, func(error) {})
		if err != nil {
			return
		}
		in.pub = &checkWriter{t: t, lastDTS: map[int]time.Duration{}}
		r.OnDecodeError(func(error) {})
		for r.Read() == nil {
		}
	})
}
