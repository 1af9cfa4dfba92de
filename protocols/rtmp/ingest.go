package rtmp

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/streamhub/streamhub/internal/units"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// supportedCodecs is said to publishers whose codec we cannot carry.
const supportedCodecs = "H264, H265 and AV1 video (Enhanced RTMP for H265/AV1); AAC, Opus, MP3 and 8 kHz G.711 audio"

// trackProbe is how much media gortmplib's Reader.Initialize reads to find
// the tracks when probeConn cannot end it earlier.
const trackProbe = probeWindow

// rtmpClock is the period of RTMP's 32-bit millisecond timestamps.
const rtmpClock = time.Duration(1<<32) * time.Millisecond

// publish reads the publisher's tracks, registers it in the hub on the
// path it claimed (and its further video tracks as rungs, multitrack.go)
// and pumps its media until the connection ends.
func (c *conn) publish(sc *gortmplib.ServerConn, claim *server.Claim) error {
	// Reading the tracks can take up to trackProbe of media (about as much
	// wall time from a live encoder without onMetaData), so the handshake
	// deadline does not fit it.
	c.nc.SetDeadline(time.Now().Add(trackProbe + c.srv.conf.ReadTimeout))
	c.rd.left = probeMaxBytes
	return pump(sc, claim, c.srv.hub, c.log, c.nc.RemoteAddr().String(), pumpHooks{
		probed: func() { c.rd.left = -1 },
		// Read and write: Read also writes the acknowledgements the
		// publisher asked for, which must not meet the handshake deadline.
		reading: func() { c.nc.SetDeadline(time.Now().Add(c.srv.conf.ReadTimeout)) },
		refuse:  func(code string, err error) error { return c.refuse(sc, code, err) },
	})
}

// pumpHooks are what pump asks of the connection.
type pumpHooks struct {
	probed  func()                             // the tracks are known
	reading func()                             // before each read
	refuse  func(code string, err error) error // tell the publisher why, return err
}

// pump is publish on any gortmplib connection (a fuzz target drives it
// with made-up messages).
func pump(sc gortmplib.Conn, claim *server.Claim, hub *server.Hub, log *slog.Logger, remote string, h pumpHooks) error {
	defer claim.Release() // no-op once published
	ids := newTrackIDs()
	probe := &probeConn{Conn: sc, ids: ids}
	r := &gortmplib.Reader{Conn: probe}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("rtmp: reading the publisher's tracks: %w", err)
	}
	h.probed()
	filter := &trackFilter{Conn: &replayConn{Conn: sc, queue: probe.read}, video: map[uint8]bool{}, audio: ids.audio, log: log}
	r.Conn = filter
	source, further, furtherIDs := splitTracks(r.Tracks(), sortedIDs(ids.video))
	in, err := newIngest(source)
	if err != nil {
		return h.refuse("NetStream.Publish.Failed", err)
	}
	in.log = log
	if vids := sortedIDs(ids.video); len(vids) > 0 {
		filter.video[vids[0]] = true
	}
	// The rungs first: the source's ladder, started when the source
	// publishes, then leaves their heights to them.
	if claim.Standby() && len(further) > 0 {
		// A standby's rungs would take the live publisher's over (a
		// derived stream takes over its path, as a restarted ladder does).
		log.Warn("multitrack: a standby publisher's renditions are not carried: its source alone waits as a standby", "tracks", len(further))
		further = nil
	}
	in.rungs = newRungs(further, furtherIDs, claim.Path(), in.firstAudio(), log)
	defer in.closeRungs()
	for _, rg := range in.rungs {
		pub, err := hub.PublishTrusted(rg.path, rg.tracks, server.PublishOptions{Derived: true, Protocol: "rtmp", Remote: remote})
		if err != nil {
			log.Warn("multitrack: a rendition not published", "track", rg.id, "path", rg.path, "err", err)
			rg.ended = true
			continue
		}
		rg.pub = pub
		filter.video[rg.id] = true
	}
	filter.onEnd = in.trackEnded
	pub, err := claim.Publish(in.tracks)
	if err != nil {
		return h.refuse(refusalCode(err, true), err)
	}
	defer pub.Close()
	in.pub = pub
	in.register(r)
	defer func() {
		if filter.dropped > 0 {
			log.Info("multitrack: messages of tracks not carried were dropped", "messages", filter.dropped)
		}
	}()
	for {
		h.reading()
		if err := r.Read(); err != nil {
			return fmt.Errorf("rtmp: publisher: %w", err)
		}
	}
}

// ingest converts gortmplib callbacks to hub units.
type ingest struct {
	pub    units.Writer
	tracks []*media.Track
	lib    []*gortmplib.Track // lib[i] is tracks[i]'s gortmplib track
	video  map[int]*units.Video
	unwrap []units.Unwrapper
	// The publisher's further video tracks (multitrack.go), and the DTS of
	// the source's last picture (srcSeen: there was one).
	rungs   []*rung
	srcLast time.Duration
	srcSeen bool
	log     *slog.Logger
}

// newIngest maps gortmplib tracks to hub tracks, refusing codecs the hub
// does not carry.
func newIngest(libTracks []*gortmplib.Track) (*ingest, error) {
	in := &ingest{video: map[int]*units.Video{}, log: slog.Default()}
	for _, lt := range libTracks {
		t := &media.Track{ID: len(in.tracks)}
		switch codec := lt.Codec.(type) {
		case *rtmpcodecs.H264:
			t.Codec, t.SPS, t.PPS = media.CodecH264, codec.SPS, codec.PPS
		case *rtmpcodecs.H265:
			t.Codec, t.VPS, t.SPS, t.PPS = media.CodecH265, codec.VPS, codec.SPS, codec.PPS
		case *rtmpcodecs.AV1:
			t.Codec = media.CodecAV1
		case *rtmpcodecs.MPEG4Audio:
			if codec.Config == nil {
				return nil, fmt.Errorf("rtmp: AAC track without AudioSpecificConfig")
			}
			asc, err := codec.Config.Marshal()
			if err != nil {
				return nil, fmt.Errorf("rtmp: invalid AAC config: %w", err)
			}
			t.Codec, t.AudioConfig, t.SampleRate = media.CodecAAC, asc, codec.Config.SampleRate
			t.Channels = int(codec.Config.ChannelConfig)
			if codec.Config.ChannelConfig == 7 {
				t.Channels = 8
			}
		case *rtmpcodecs.Opus:
			t.Codec, t.SampleRate, t.Channels = media.CodecOpus, 48000, 2
			if codec.IDHeader != nil {
				t.Channels = int(codec.IDHeader.ChannelCount)
			}
		case *rtmpcodecs.MPEG1Audio:
			t.Codec = media.CodecMP3
		case *rtmpcodecs.G711:
			// FLV's G.711 is 8 kHz; streamhub's own relays (package cluster)
			// carry a camera's audio this way.
			t.Codec, t.SampleRate, t.Channels = media.CodecG711A, 8000, max(codec.ChannelCount, 1)
			if codec.MULaw {
				t.Codec = media.CodecG711U
			}
		default:
			return nil, fmt.Errorf("rtmp: unsupported codec %T: streamhub takes %s", lt.Codec, supportedCodecs)
		}
		if t.IsVideo() {
			in.video[t.ID] = units.NewVideo(t)
			t = in.video[t.ID].Track()
		}
		in.tracks = append(in.tracks, t)
		in.lib = append(in.lib, lt)
	}
	if len(in.tracks) == 0 {
		return nil, fmt.Errorf("rtmp: the publisher sent no track: streamhub takes %s", supportedCodecs)
	}
	in.unwrap = make([]units.Unwrapper, len(in.tracks))
	for i := range in.unwrap {
		in.unwrap[i].Period = rtmpClock
	}
	return in, nil
}

// register sets the gortmplib callbacks, the rungs' included (every track
// the reader knows needs one: gortmplib calls it unchecked).
func (in *ingest) register(r *gortmplib.Reader) {
	for _, rg := range in.rungs {
		rg := rg
		cb := func(pts, dts time.Duration, au [][]byte) { in.rungVideo(rg, pts, dts, au) }
		switch rg.lib.Codec.(type) {
		case *rtmpcodecs.H264:
			r.OnDataH264(rg.lib, cb)
		case *rtmpcodecs.H265:
			r.OnDataH265(rg.lib, cb)
		}
	}
	for i, lt := range in.lib {
		id := i
		switch lt.Codec.(type) {
		case *rtmpcodecs.H264:
			r.OnDataH264(lt, func(pts, dts time.Duration, au [][]byte) { in.video26x(id, pts, dts, au) })
		case *rtmpcodecs.H265:
			r.OnDataH265(lt, func(pts, dts time.Duration, au [][]byte) { in.video26x(id, pts, dts, au) })
		case *rtmpcodecs.AV1:
			r.OnDataAV1(lt, func(pts time.Duration, tu [][]byte) { in.video26x(id, pts, pts, tu) })
		case *rtmpcodecs.MPEG4Audio:
			r.OnDataMPEG4Audio(lt, func(pts time.Duration, au []byte) { in.audio(id, pts, au) })
		case *rtmpcodecs.Opus:
			r.OnDataOpus(lt, func(pts time.Duration, pkt []byte) { in.audio(id, pts, pkt) })
		case *rtmpcodecs.MPEG1Audio:
			r.OnDataMPEG1Audio(lt, func(pts time.Duration, frame []byte) { in.audio(id, pts, frame) })
		case *rtmpcodecs.G711:
			r.OnDataG711(lt, func(pts time.Duration, samples []byte) { in.audio(id, pts, samples) })
		}
	}
}

// video26x handles one video access unit (RTMP DTS in ms, 32-bit wrapping;
// pts = dts + composition time).
func (in *ingest) video26x(id int, pts, dts time.Duration, au [][]byte) {
	v := in.video[id]
	udts := in.unwrap[id].Unwrap(dts % rtmpClock)
	u, changed := v.Unit(udts+(pts-dts), udts, au)
	if changed {
		in.tracks[id] = v.Track()
		in.pub.UpdateTrack(v.Track())
	}
	if u == nil {
		return
	}
	u.Wall = time.Now()
	// u is the hub's once written (a standby's unit can be retimed by a
	// takeover on another goroutine): nothing of it is read afterwards.
	in.pub.Write(u)
	if id == in.firstVideo() {
		in.srcLast, in.srcSeen = udts, true // the source's own timeline, as the rungs' udts
		in.checkSilentRungs()
	}
}

func (in *ingest) audio(id int, pts time.Duration, frame []byte) {
	if len(frame) == 0 {
		return
	}
	upts := in.unwrap[id].Unwrap(pts % rtmpClock)
	u := &media.Unit{Track: in.tracks[id], PTS: upts, DTS: upts, KeyFrame: true, Payload: [][]byte{frame}, Wall: time.Now()}
	wall := u.Wall
	in.pub.Write(u) // the hub's from here on: not read again
	if len(in.rungs) > 0 && in.tracks[id] == in.firstAudio() {
		in.rungAudio(upts, wall, frame)
	}
}
