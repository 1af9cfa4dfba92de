package webrtc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpav1"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/internal/units"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// trackWait bounds how long a connected WHIP session waits for the media
// its answer accepted before publishing what came.
const trackWait = 3 * time.Second

// minPLIGap rate-limits keyframe requests to a publisher: readers joining
// and viewers losing packets ask together.
const minPLIGap = 500 * time.Millisecond

var (
	errNoMedia = errors.New("webrtc: the publisher sent no media after connecting")
	errKicked  = errors.New("webrtc: kicked by the API")
)

// whipIngest turns a WHIP session's RTP into hub units.
type whipIngest struct {
	ss    *session
	claim *server.Claim // the path held from the POST until the tracks are known
	// enc makes AAC from opus into aac (Config.AACEncoder), nil without.
	enc      AudioEncoder
	opus     *media.Track
	aac      *media.Track
	expected int           // media sections the answer accepted; guarded by mu
	closed   bool          // the session ended: no new track; guarded by mu
	lost     atomic.Uint64 // packets given up on, over every track

	kick chan struct{} // a keyframe request, for serve (never blocks)

	mu        sync.Mutex // mu guards the fields below and the units of every track
	t0        time.Time  // arrival of the first packet: the session's time origin
	tracks    []*inTrack
	ready     chan struct{} // closed when every expected track arrived
	readyOnce sync.Once
	pub       *server.Publisher
	lastKey   time.Time // arrival of the last keyframe
	wg        sync.WaitGroup
}

// inTrack is one received track.
type inTrack struct {
	in     *whipIngest
	remote *pwebrtc.TrackRemote
	track  *media.Track // audio; video's is video.Track()
	video  *units.Video
	decode func(*rtp.Packet) ([][]byte, error)
	clock  int64
	ro     reorderer

	started bool
	base    time.Duration // the first packet's arrival after t0
	lastTS  uint32
	ext     int64 // RTP time since the first packet, unwrapped
	errs    int   // packets that failed to depacketize, units that went back in time
	wrote   bool  // lastDTS is set
	lastDTS time.Duration
}

// newWHIP checks a publisher and answers its offer.
func (s *Server) newWHIP(r *http.Request, path, key string, peer server.Peer, offer string) (*session, error) {
	if err := server.ValidatePath(path); err != nil {
		return nil, err
	}
	sd, err := parseOffer(offer)
	if err != nil {
		return nil, err
	}
	if err := checkWHIPCodecs(sd); err != nil {
		return nil, err
	}
	in := &whipIngest{kick: make(chan struct{}, 1), ready: make(chan struct{})}
	// The guarded door: the key (Bearer or ?key=), the registry, the hook
	// and the refusal delay, once; the claim holds the path (a stream in
	// its grace period keeps its viewers) until the tracks are known.
	claim, err := s.hub.Publish(r.Context(), path, server.PublishRequest{Peer: peer, Key: key,
		OnKeyframeRequest: in.requestKeyframe})
	if err != nil {
		return nil, err
	}
	in.claim = claim
	ss, err := s.newSession(kindWHIP, claim.Path(), r.RemoteAddr, s.whip, offer, func(ss *session) error {
		in.ss = ss
		ss.pc.OnTrack(in.onTrack)
		return nil
	})
	if err != nil {
		claim.Release()
		return nil, err
	}
	claim.SetKick(func() { ss.end(errKicked) })
	expected := acceptedSections(ss.answer)
	in.mu.Lock() // the connection is up: tracks may be arriving already
	in.expected = expected
	if expected > 0 && len(in.tracks) >= expected {
		in.readyOnce.Do(func() { close(in.ready) })
	}
	in.mu.Unlock()
	if expected == 0 {
		ss.pc.Close()
		claim.Release()
		return nil, badRequest("webrtc: no media section of the offer can be taken: streamhub takes %s", supportedCodecs)
	}
	ss.serve = in.serve
	ss.cleanup = func() {
		in.mu.Lock()
		in.closed = true // no track goroutine starts from now on
		in.mu.Unlock()
		in.wg.Wait()
		if in.enc != nil {
			in.enc.Close()
		}
		in.claim.Release() // a session that ended before publishing; nothing after Publish
	}
	if !ss.start() {
		claim.Release()
		return nil, &requestError{status: http.StatusServiceUnavailable, err: ErrServerClosed}
	}
	return ss, nil
}

// checkWHIPCodecs refuses an offer with no codec the hub carries, naming
// what it offered and what would work.
func checkWHIPCodecs(sd *sdp.SessionDescription) error {
	v, a := offeredCodecs(sd, "video"), offeredCodecs(sd, "audio")
	if v["H264"] || v["H265"] || v["AV1"] || a["OPUS"] {
		return nil
	}
	var got []string
	for c := range v {
		got = append(got, c)
	}
	for c := range a {
		got = append(got, c)
	}
	sort.Strings(got)
	return badRequest("webrtc: the offer has no codec streamhub takes (offered: %s): WHIP takes %s",
		strings.Join(got, ", "), supportedCodecs)
}

// acceptedSections counts the audio and video sections an answer accepted.
func acceptedSections(answer string) int {
	var sd sdp.SessionDescription
	if sd.UnmarshalString(answer) != nil {
		return 0
	}
	n := 0
	for _, m := range sd.MediaDescriptions {
		if (m.MediaName.Media == "audio" || m.MediaName.Media == "video") && m.MediaName.Port.Value != 0 {
			if _, inactive := m.Attribute("inactive"); !inactive {
				n++
			}
		}
	}
	return n
}

// onTrack is pion's callback for a new remote track.
func (in *whipIngest) onTrack(remote *pwebrtc.TrackRemote, recv *pwebrtc.RTPReceiver) {
	defer guard.Recover(in.ss.log, "webrtc track")
	it := &inTrack{in: in, remote: remote, clock: int64(remote.Codec().ClockRate)}
	t := &media.Track{}
	switch mime := strings.ToLower(remote.Codec().MimeType); mime {
	case strings.ToLower(pwebrtc.MimeTypeH264):
		d := &rtph264.Decoder{}
		t.Codec, it.decode = media.CodecH264, d.Decode
		d.Init() //nolint:errcheck // never fails
	case strings.ToLower(pwebrtc.MimeTypeH265):
		d := &rtph265.Decoder{}
		t.Codec, it.decode = media.CodecH265, d.Decode
		d.Init() //nolint:errcheck // never fails
	case strings.ToLower(pwebrtc.MimeTypeAV1):
		d := &rtpav1.Decoder{}
		t.Codec, it.decode = media.CodecAV1, d.Decode
		d.Init() //nolint:errcheck // never fails
	case strings.ToLower(pwebrtc.MimeTypeOpus):
		t.Codec, t.SampleRate, t.Channels = media.CodecOpus, 48000, 2
	default:
		in.ss.log.Info("track ignored", "codec", guard.Truncate(mime))
		return
	}
	if it.clock <= 0 {
		it.clock = 90000
	}
	in.mu.Lock()
	if in.closed { // pion calls OnTrack on a goroutine of its own: it may come after the end
		in.mu.Unlock()
		return
	}
	if in.pub != nil { // a late track: the hub's track list is fixed
		in.mu.Unlock()
		in.ss.log.Info("track ignored: it came after publishing", "codec", t.Codec)
		return
	}
	t.ID = len(in.tracks)
	if t.IsVideo() {
		it.video = units.NewVideo(t)
	} else {
		it.track = t
	}
	in.tracks = append(in.tracks, it)
	if in.expected > 0 && len(in.tracks) >= in.expected {
		in.readyOnce.Do(func() { close(in.ready) })
	}
	in.wg.Add(2)
	in.mu.Unlock()
	go it.read()
	go func() { // drain RTCP, which the interceptors need read
		defer in.wg.Done()
		defer guard.Recover(in.ss.log, "webrtc rtcp")
		for {
			if _, _, err := recv.ReadRTCP(); err != nil {
				return
			}
		}
	}()
}

// read pumps one track until the PeerConnection closes.
func (it *inTrack) read() {
	in := it.in
	defer in.wg.Done()
	defer guard.Recover(in.ss.log, "webrtc track reader")
	var ordered []*rtp.Packet
	for {
		p, _, err := it.remote.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		before := it.ro.lost
		var lost bool
		ordered, lost = it.ro.push(p, now, ordered)
		if n := it.ro.lost - before; n > 0 {
			in.lost.Add(n)
		}
		it.handleAll(ordered, now)
		if lost && it.video != nil {
			in.requestKeyframe() // the picture is broken until the next keyframe
		}
	}
}

// handleAll hands in-order packets to handle under in.mu (released even if
// handle panics: the session must still be able to end).
func (it *inTrack) handleAll(ordered []*rtp.Packet, now time.Time) {
	in := it.in
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.t0.IsZero() {
		in.t0 = now
	}
	for _, p := range ordered {
		it.handle(p, now)
	}
}

// forward reports whether a unit at dts may go to the hub: a peer's RTP
// timestamps must not take the track back in time (the hub's timeline and
// every muxer after it assume they do not). A unit that would is dropped
// and counted.
func (it *inTrack) forward(dts time.Duration) bool {
	if it.wrote && dts < it.lastDTS {
		it.errs++
		return false
	}
	it.wrote, it.lastDTS = true, dts
	return true
}

// handle turns one in-order packet into units; in.mu must be held.
func (it *inTrack) handle(p *rtp.Packet, now time.Time) {
	in := it.in
	if !it.started {
		it.started, it.lastTS, it.base = true, p.Timestamp, now.Sub(in.t0)
	}
	it.ext += int64(int32(p.Timestamp - it.lastTS))
	it.lastTS = p.Timestamp
	// Each track starts at its first packet's arrival: good to a few ms on
	// one link, which is how close browsers' first audio and video are.
	pts := it.base + time.Duration(it.ext/it.clock)*time.Second + time.Duration(it.ext%it.clock)*time.Second/time.Duration(it.clock)
	if it.video == nil {
		if len(p.Payload) == 0 {
			return
		}
		if !it.forward(pts) {
			return
		}
		if in.pub != nil {
			u := &media.Unit{Track: it.track, PTS: pts, DTS: pts, KeyFrame: true, Payload: [][]byte{p.Payload}}
			if in.enc != nil && it.track == in.opus {
				in.enc.Feed(u) // before Write, which moves u onto the stream's timeline
			}
			in.pub.Write(u)
		}
		return
	}
	au, err := it.decode(p)
	if err != nil {
		if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph265.ErrMorePacketsNeeded) &&
			!errors.Is(err, rtpav1.ErrMorePacketsNeeded) {
			it.errs++
		}
		return
	}
	// Browsers and OBS send no B-frames: DTS is PTS.
	u, changed := it.video.Unit(pts, pts, au)
	if changed && in.pub != nil {
		in.pub.UpdateTrack(it.video.Track())
	}
	if u == nil {
		return
	}
	if !it.forward(u.DTS) {
		in.requestKeyframe() // the pictures after it refer to what was dropped (never blocks)
		return
	}
	if u.KeyFrame {
		in.lastKey = now
	}
	if in.pub != nil {
		in.pub.Write(u)
	}
}

// requestKeyframe asks serve to send a PLI; it never blocks.
func (in *whipIngest) requestKeyframe() {
	select {
	case in.kick <- struct{}{}:
	default:
	}
}

// serve publishes once the tracks are known and asks for keyframes until
// the session ends.
func (in *whipIngest) serve(ctx context.Context) error {
	ss := in.ss
	t := time.NewTimer(trackWait)
	defer t.Stop()
	select {
	case <-in.ready:
	case <-t.C:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	in.mu.Lock()
	// Video first, in the order the tracks came: IDs are set now, and
	// nothing has used them yet (units before publishing are dropped).
	sort.SliceStable(in.tracks, func(i, j int) bool { return in.tracks[i].video != nil && in.tracks[j].video == nil })
	var tracks []*media.Track
	var opus *inTrack
	for _, it := range in.tracks {
		if it.video != nil {
			tracks = append(tracks, it.video.Track())
			continue
		}
		if opus == nil {
			opus = it
			if enc := in.startAAC(it.track); enc != nil {
				// AAC before Opus: FLV, RTMP and HLS take the first audio
				// track they carry, WebRTC viewers the Opus one.
				tracks = append(tracks, in.aac)
			}
		}
		tracks = append(tracks, it.track)
	}
	for i, t := range tracks {
		t.ID = i
	}
	if len(tracks) == 0 {
		in.mu.Unlock()
		return errNoMedia
	}
	// Publish under mu: the track goroutines must not touch the tracks
	// while the hub takes them over.
	pub, err := in.claim.Publish(tracks)
	in.pub = pub
	if pub != nil {
		pub.SetLinkStats(in.link)
	}
	in.mu.Unlock()
	if err != nil {
		return fmt.Errorf("webrtc: publish: %w", err)
	}
	defer func() {
		in.mu.Lock()
		in.pub = nil
		in.mu.Unlock()
		pub.Close()
	}()

	interval := ss.srv.conf.KeyframeInterval
	tick := time.NewTicker(interval / 4)
	defer tick.Stop()
	var lastPLI time.Time
	pending := false // a request came too soon after the last PLI
	pli := func(now time.Time) {
		lastPLI = now
		var pkts []rtcp.Packet
		in.mu.Lock()
		for _, it := range in.tracks {
			if it.video != nil {
				pkts = append(pkts, &rtcp.PictureLossIndication{MediaSSRC: uint32(it.remote.SSRC())})
			}
		}
		in.mu.Unlock()
		if len(pkts) > 0 {
			ss.pc.WriteRTCP(pkts) //nolint:errcheck // the next one may get through
		}
	}
	pli(time.Now()) // the first keyframe came before publishing and was dropped
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case now := <-tick.C:
			in.mu.Lock()
			stale := now.Sub(in.lastKey) >= interval
			in.mu.Unlock()
			if (stale && now.Sub(lastPLI) >= interval) || (pending && now.Sub(lastPLI) >= minPLIGap) {
				pending = false
				pli(now)
			}
		case <-in.kick:
			if now := time.Now(); now.Sub(lastPLI) >= minPLIGap {
				pli(now)
			} else {
				pending = true
			}
		}
	}
}

// startAAC starts the reverse audio job for the Opus track t, if there is
// one (Config.AACEncoder); in.mu must be held.
func (in *whipIngest) startAAC(t *media.Track) AudioEncoder {
	conf := in.ss.srv.conf
	if conf.AACEncoder == nil {
		return nil
	}
	aac := &media.Track{Codec: media.CodecAAC, AudioConfig: conf.AACConfig, SampleRate: 48000, Channels: 2}
	enc, err := conf.AACEncoder(in.ss.path, t, aac, in.writeAAC)
	if err != nil {
		in.ss.log.Info("no AAC for players that cannot take Opus", "cause", err.Error())
		return nil
	}
	in.enc, in.opus, in.aac = enc, t, aac
	return enc
}

// writeAAC writes a unit the AAC encoder made, in its turn with the RTP
// tracks (a Publisher takes one writer at a time).
func (in *whipIngest) writeAAC(u *media.Unit) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.pub != nil {
		in.pub.Write(u)
	}
}

// link returns the session's figures for the API and the metrics: the
// round-trip time and the packets given up on after waiting for their
// retransmission.
// It takes no lock: the hub may call it at any time.
func (in *whipIngest) link() server.LinkStats {
	return server.LinkStats{RTTMs: in.ss.rttMs(), LostPackets: in.lost.Load()}
}
