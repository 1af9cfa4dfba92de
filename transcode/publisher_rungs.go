package transcode

import (
	"slices"
	"strings"

	"github.com/streamhub/streamhub/server"
)

// A publisher may send its own renditions (OBS multitrack over Enhanced
// RTMP): its protocol publishes them as derived streams <source>/<name>,
// like the ladder's rungs but made by the encoder. They take precedence:
// the ladder skips every rung whose name a publisher rung has (when it
// starts: a publisher rung that appears later keeps its path busy for the
// ladder's rung of that name, which is then not published), and the
// renditions a path lists are the publisher's plus the ladder's others.

// ladderProtocol is the PublishOptions.Protocol of the ladder's rungs.
const ladderProtocol = "transcode"

// PublisherRungs returns the renditions of source that its publisher
// sends itself: the live derived streams source/<name> with a video track
// that the ladder did not make, highest first. Their bandwidth is measured
// (bytes in over uptime).
func PublisherRungs(hub *server.Hub, source string) []Rendition {
	var out []Rendition
	for _, s := range hub.Streams() {
		name, ok := strings.CutPrefix(s.Path(), source+"/")
		if !ok || strings.Contains(name, "/") || name == OpusRung || !s.Derived() || !s.Publishing() {
			continue
		}
		st := s.Stats()
		if !st.Publishing || strings.HasPrefix(st.Publisher, ladderProtocol+" ") {
			continue
		}
		v := sourceVideo(s.Tracks())
		if v == nil {
			continue
		}
		bw := 1
		if secs := st.Uptime.Seconds(); secs > 0 {
			bw = max(1, int(float64(st.BytesIn*8)/secs))
		}
		out = append(out, Rendition{Name: name, Height: v.Height, Bandwidth: bw, AverageBandwidth: bw})
	}
	sortRenditions(out)
	return out
}

// sortRenditions orders rs highest first, then by name.
func sortRenditions(rs []Rendition) {
	slices.SortFunc(rs, func(a, b Rendition) int {
		if a.Height != b.Height {
			return b.Height - a.Height
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// withoutPublisherRungs returns the rungs of the ladder whose names no
// publisher rung of source has.
func (m *Manager) withoutPublisherRungs(source string, rungs []Rung) []Rung {
	own := PublisherRungs(m.hub, source)
	if len(own) == 0 {
		return rungs
	}
	var out []Rung
	for _, r := range rungs {
		if !slices.ContainsFunc(own, func(o Rendition) bool { return o.Name == r.Name }) {
			out = append(out, r)
		}
	}
	return out
}
