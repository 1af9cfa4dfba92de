package webrtc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpav1"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// A WHEP viewer has its own hub reader, pulled in its session goroutine:
// a slow viewer only drops its own units (the hub skips it to the next
// keyframe). What a unit becomes on the wire, its RTP payloads, is made
// once per unit (Unit.Memo) and shared by every viewer; per viewer there
// is only a 12-byte header (its own sequence numbers and timestamps:
// viewers start at different units) and the SRTP encryption.

// maxPayload keeps an SRTP packet within a 1280-byte IPv6 minimum MTU.
const maxPayload = 1200

// histSize is how many sent packets a viewer can resend on NACK (about
// 0.7 s at 2.7 Mbit/s). It holds references to the shared payloads,
// not copies.
const histSize = 1024

// viewerBatch is how many units a viewer takes from its reader at once.
const viewerBatch = 64

// minViewerPLIGap rate-limits the keyframe requests one viewer forwards.
const minViewerPLIGap = time.Second

var errBFrames = errors.New("webrtc: the stream has B-frames, which WebRTC players cannot show in order: " +
	"play a rung of its ladder (/<path>/<rung>/whep, encoded without B-frames) or publish with bf=0")

// viewer is one WHEP session's sending side.
type viewer struct {
	ss    *session
	r     *server.Reader
	first []*media.Unit // units read before answering (to see B-frames)
	video *outTrack
	audio *outTrack
	wg    sync.WaitGroup // RTCP readers
	// companion hands over the reader of the source's Opus companion
	// stream when the source's audio is not Opus (nil otherwise), or nil
	// when none came: one attach (openCompanion) at a time is under way
	// while comp, the reader the send loop reads it from, is nil.
	companion       chan *server.Reader
	companionPath   string
	companionLogged atomic.Bool // said once per viewer that there is none
	comp            *server.Reader
	compBuf         []*media.Unit
	// session, videoID and audioID are the publisher and the track IDs
	// this viewer takes (send's goroutine only).
	session          uint64
	videoID, audioID int
	pliMu            sync.Mutex
	pliAt            time.Time
	// reportAt is when the last sender reports went (send loop only).
	reportAt time.Time
	// cork batches the packets of the units read at once for the peer's
	// address (gso_linux.go); nil when the socket cannot.
	cork     atomic.Pointer[cork]
	pairMu   sync.Mutex // pairMu orders cork updates and pairDone
	pairDone bool
	// udpPeer is the address of the ICE pair in use when it is UDP (nil
	// for TCP): the viewer then encrypts and sends its RTP itself
	// (srtpout.go, srtp made once by srtpOnce; ownUsed once it did).
	udpPeer  atomic.Pointer[netip.AddrPort]
	srtpOnce sync.Once
	srtp     *srtpSender
	ownUsed  atomic.Bool
	// pionUsed is set once an RTP packet went through pion's SRTP: from
	// then on the viewer stays there (a context of ours would start the
	// stream's rollover counter again, and reuse pion's nonces).
	pionUsed atomic.Bool
	// srcOut is when next last returned source units (the batch pacing).
	srcOut time.Time
	// stepMu is held by a fan's pass while it writes to the viewer
	// (fan.go); fanOut (under it) says no pass may any more, and fanErr
	// carries the error a pass ended the viewer with.
	stepMu sync.Mutex
	fanOut bool
	fanErr chan error
}

// outTrack is one track sent to one viewer.
type outTrack struct {
	v      *viewer
	codec  media.Codec
	clock  int64
	track  *directTrack
	sender *pwebrtc.RTPSender
	tsBase uint32

	mu   sync.Mutex // mu guards the fields below (the send loops and the RTCP reader)
	seq  uint16
	hist [histSize]sent
	// sentPkts and resent count packets for the session's figures, lost
	// what the viewer's receiver reports say it lost.
	sentPkts, resent, lost uint64
	// octets, lastTS (the newest RTP time sent, tsBase included) and
	// lastAt (when it was first sent) make the sender reports.
	octets       uint64
	lastTS       uint32
	lastAt       time.Time
	stamped      bool
	reportedPkts uint64 // packets counted in the last sender report
	// resendTokens are the resends this viewer may still make (see
	// resendShare).
	resendTokens float64
}

// sent is one packet in a viewer's history.
type sent struct {
	ok       bool
	seq      uint16
	ts       uint32
	marker   bool
	payload  []byte // shared, never modified
	resentAt int64  // unix ns of its last resend, 0 if none
}

// Resends are bounded, so that a viewer's NACKs cannot make the server send
// more than the stream to it: every packet sent earns resendShare of a
// resend (at most resendBurst banked), and one packet is resent at most
// once per resendGap, however often it is asked for.
const (
	resendShare = 0.5
	resendBurst = 256
	resendGap   = 50 * time.Millisecond
)

// newWHEP checks a viewer, attaches a hub reader and answers its offer.
func (s *Server) newWHEP(r *http.Request, path, key string, peer server.Peer, offer string) (*session, error) {
	if err := server.ValidatePath(path); err != nil {
		return nil, err
	}
	sd, err := parseOffer(offer)
	if err != nil {
		return nil, err
	}
	rd, err := s.hub.Read(r.Context(), path, server.ReadRequest{Peer: peer, Key: key, Wait: true})
	if err != nil {
		return nil, err
	}
	v := &viewer{r: rd}
	var vt, at *media.Track
	otherAudio := false // audio WebRTC cannot carry (AAC, G.711, MP3)
	for _, t := range rd.Tracks() {
		switch {
		case t.IsVideo():
			if vt == nil {
				vt = t
			}
		case t.Codec == media.CodecOpus:
			if at == nil {
				at = t
			}
		default:
			otherAudio = true
		}
	}
	// Audio WebRTC cannot carry comes from the source's Opus companion (the
	// transcode audio job), read beside the source: the picture starts
	// from the GOP cache at once, whatever the job's start-up time.
	companion := ""
	if at == nil && otherAudio && s.conf.OpusPath != nil {
		companion = s.conf.OpusPath(path)
		if companion != "" {
			at = &media.Track{Codec: media.CodecOpus}
		}
	}
	fail := func(err error) (*session, error) {
		rd.Close()
		return nil, err
	}
	offV, offA := offeredCodecs(sd, "video"), offeredCodecs(sd, "audio")
	if vt != nil && !offV[mimeName(vt.Codec)] {
		return fail(badRequest("webrtc: the stream's video is %s and the offer has no %s: WHEP sends %s as published", vt.Codec, vt.Codec, supportedCodecs))
	}
	if at != nil && !offA["OPUS"] {
		at, companion = nil, ""
	}
	if vt == nil && at == nil {
		return fail(badRequest("webrtc: the stream has no track WebRTC can carry: WHEP sends %s", supportedCodecs))
	}
	// Look at what is cached before answering: B-frames are refused here
	// with a reason rather than sent as a stuttering picture.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	v.first, _ = rd.NextBatch(done, make([]*media.Unit, 0, 4096))
	for _, u := range v.first {
		if u.Track.IsVideo() && u.PTS != u.DTS {
			return fail(&requestError{status: http.StatusBadRequest, err: errBFrames})
		}
	}
	ss, err := s.newSession(kindWHEP, path, r.RemoteAddr, s.whep, offer, func(ss *session) error {
		v.ss = ss
		var err error
		if vt != nil {
			if v.video, err = v.addTrack(vt.Codec, 90000); err != nil {
				return err
			}
		}
		if at != nil {
			v.audio, err = v.addTrack(media.CodecOpus, 48000)
		}
		return err
	})
	if err != nil {
		return fail(err)
	}
	ss.serve, ss.viewer = v.serve, v
	ss.cleanup = func() {
		rd.Close()
		v.wg.Wait()
		if v.companion != nil {
			// What the last attach handed over and the loop did not take.
			select {
			case c := <-v.companion:
				if c != nil {
					c.Close()
				}
			default:
			}
		}
	}
	rd.SetPeer(peer, func() { ss.end(errKicked) })
	rd.SetLinkStats(v.link)
	if companion != "" {
		v.companion, v.companionPath = make(chan *server.Reader, 1), companion
		v.wg.Add(1) // before start: the session's cleanup waits for it
	}
	if !ss.start() {
		if companion != "" {
			v.wg.Done()
		}
		return fail(&requestError{status: http.StatusServiceUnavailable, err: ErrServerClosed})
	}
	if companion != "" {
		// Ask for the companion now: FFmpeg starts while ICE and DTLS run.
		go v.openCompanion(ss.ctx, 0)
	}
	return ss, nil
}

// openCompanion attaches to the Opus companion stream after delay and
// hands the reader (nil if none came) to the send loop.
func (v *viewer) openCompanion(ctx context.Context, delay time.Duration) {
	defer v.wg.Done()
	defer guard.Recover(v.ss.log, "webrtc companion")
	var r *server.Reader
	defer func() { v.companion <- r }() // room: one attach at a time
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	r = v.attachCompanion(ctx, v.companionPath)
	if r != nil && ctx.Err() != nil {
		r.Close()
		r = nil
	}
}

// attachCompanion reads the Opus companion at path, waiting for the audio
// job to publish it; nil (logged) when it does not come or is not the
// job's stream.
func (v *viewer) attachCompanion(ctx context.Context, path string) *server.Reader {
	wctx, cancel := context.WithTimeout(ctx, server.OnDemandTimeout)
	defer cancel()
	// Trusted: the viewer was authorized for the source; this is its audio.
	r, err := v.ss.srv.hub.ReadTrusted(wctx, path, server.ReadOptions{Wait: true})
	if err != nil {
		if ctx.Err() == nil && v.companionLogged.CompareAndSwap(false, true) {
			v.ss.log.Info("audio not sent: no Opus companion stream (trying again)", "companion", path, "cause", err.Error())
		}
		return nil
	}
	if !r.Stream().Derived() {
		// Something else published there (no job's stream): not its audio.
		v.ss.log.Warn("audio not sent: the Opus companion path is not the audio job's stream", "companion", path)
		r.Close()
		return nil
	}
	return r
}

// companionRetry is the pause before attaching to the companion again
// after an attach found none.
const companionRetry = 500 * time.Millisecond

// audioWait bounds how long the companion's sound waits for a picture to
// leave with: a little over one picture interval at 30 fps, so that with
// video flowing the sound rides along (one wake-up and one sendmmsg for
// both), and without it the sound still leaves every audioWait.
const audioWait = 35 * time.Millisecond

// takeCompanion takes the reader an attach handed over: a nil one (none
// came) starts the next attach after companionRetry. Send loop only.
func (v *viewer) takeCompanion(ctx context.Context, r *server.Reader) {
	v.comp = r
	if r == nil {
		v.wg.Add(1)
		go v.openCompanion(ctx, companionRetry)
	}
}

// companionUnits returns the companion's Opus units ready now. When the
// companion ends (the source republished, the job restarted) it attaches
// again, so the sound comes back with the source. Send loop only.
func (v *viewer) companionUnits(ctx context.Context) []*media.Unit {
	if v.companion == nil {
		return nil
	}
	if v.comp == nil {
		select {
		case r := <-v.companion:
			v.takeCompanion(ctx, r)
		default:
		}
		if v.comp == nil {
			return nil
		}
	}
	units, _, err := v.comp.TryNextBatch(v.compBuf[:0])
	if err != nil {
		v.comp.Close()
		v.comp = nil
		if ctx.Err() == nil {
			v.ss.log.Info("the Opus companion stream ended; attaching again", "companion", v.companionPath)
			v.wg.Add(1)
			go v.openCompanion(ctx, 0)
		}
		return nil
	}
	return units
}

// next returns the source's next units, waiting for them. With a
// companion it also returns (with none) when a companion reader was
// handed over or audioWait passed, for the loop to send the sound alone.
func (v *viewer) next(ctx context.Context, buf []*media.Unit, t *time.Timer) ([]*media.Unit, error) {
	if v.companion == nil {
		return v.r.NextBatch(ctx, buf)
	}
	// The path's batch pacing, as NextBatch keeps it (the sound waits
	// with the pictures).
	if iv := v.r.Stream().BatchPace(); iv > 0 && !v.srcOut.IsZero() {
		if d := iv - time.Since(v.srcOut); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return buf, ctx.Err()
			}
		}
	}
	// audioWait counts from here: the source's wake-ups that bring
	// nothing (a reader skipping to a keyframe) do not hold the sound.
	t.Reset(audioWait)
	for {
		batch, wake, err := v.r.TryNextBatch(buf)
		if err != nil || wake == nil {
			if len(batch) > 0 {
				v.srcOut = time.Now()
			}
			return batch, err
		}
		var handover <-chan *server.Reader
		var tick <-chan time.Time
		if v.comp == nil {
			handover = v.companion
		} else {
			tick = t.C
		}
		select {
		case <-wake:
		case r := <-handover:
			v.takeCompanion(ctx, r)
			return batch, nil
		case <-tick:
			return batch, nil
		case <-ctx.Done():
			return batch, ctx.Err()
		}
	}
}

func mimeName(c media.Codec) string {
	switch c {
	case media.CodecH264:
		return "H264"
	case media.CodecH265:
		return "H265"
	case media.CodecAV1:
		return "AV1"
	case media.CodecOpus:
		return "OPUS"
	}
	return c.String()
}

// addTrack adds a track of codec to the viewer's PeerConnection.
func (v *viewer) addTrack(c media.Codec, clock int64) (*outTrack, error) {
	var capability pwebrtc.RTPCodecCapability
	switch c {
	case media.CodecH264:
		capability = h264Codec
	case media.CodecH265:
		capability = h265Codec
	case media.CodecAV1:
		capability = av1Codec
	case media.CodecOpus:
		capability = opusCodec
	}
	kind := "video"
	if c == media.CodecOpus {
		kind = "audio"
	}
	st, err := pwebrtc.NewTrackLocalStaticRTP(capability, kind, "streamhub")
	if err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	tr := &directTrack{TrackLocalStaticRTP: st}
	sender, err := v.ss.pc.AddTrack(tr)
	if err != nil {
		return nil, badRequest("webrtc: cannot send %s to this offer: %v", c, err)
	}
	return &outTrack{v: v, codec: c, clock: clock, track: tr, sender: sender, seq: uint16(mrand.Uint32()), tsBase: mrand.Uint32()}, nil
}

// serve sends the stream until the viewer or the stream ends.
func (v *viewer) serve(ctx context.Context) error {
	for _, o := range []*outTrack{v.video, v.audio} {
		if o != nil {
			v.wg.Add(1)
			go o.readRTCP()
		}
	}
	v.watchPair()
	defer v.unwatchPair()
	var timer *time.Timer
	if v.companion != nil {
		// The companion's sound is read here, between the pictures: one
		// goroutine and one wake-up for both.
		v.compBuf = make([]*media.Unit, 0, viewerBatch)
		timer = time.NewTimer(audioWait)
		defer timer.Stop()
		defer func() {
			if v.comp != nil {
				v.comp.Close()
				v.comp = nil
			}
		}()
	}
	batch := v.first
	v.first = nil
	buf := make([]*media.Unit, 0, viewerBatch)
	for {
		if err := v.sendBatch(v.companionUnits(ctx), batch); err != nil {
			return err
		}
		v.sendReports(time.Now())
		var err error
		if v.fanReady() {
			// On the own SRTP path: once caught up (nothing more to read
			// now), the stream's fan serves it (fan.go).
			var wake <-chan struct{}
			if batch, wake, err = v.r.TryNextBatch(buf[:0]); err != nil {
				return err
			}
			if wake != nil {
				return v.fanServe(ctx)
			}
			continue
		}
		batch, err = v.next(ctx, buf[:0], timer)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return context.Cause(ctx)
			}
			return err
		}
	}
}

// fanServe hands the viewer to its stream's fan and waits until a pass
// ends it or its session ends.
func (v *viewer) fanServe(ctx context.Context) error {
	v.fanErr = make(chan error, 1)
	sh := v.ss.srv.fanJoin(v)
	select {
	case err := <-v.fanErr:
		return err
	case <-ctx.Done():
		sh.leave(v)
		return context.Cause(ctx)
	}
}

// sendBatch writes the companion's sound and the units read at once,
// their packets gathered into as few system calls as the socket allows.
func (v *viewer) sendBatch(audio, batch []*media.Unit) error {
	k := v.cork.Load()
	k.begin()
	defer k.flush()
	for _, u := range audio {
		if u.Track.Codec != media.CodecOpus {
			continue
		}
		if err := v.audio.writeOpus(u); err != nil {
			return err
		}
	}
	for _, u := range batch {
		if err := v.send(u); err != nil {
			return err
		}
	}
	return nil
}

// watchPair keeps v.cork on the address of the ICE pair in use (it
// changes on an ICE restart).
func (v *viewer) watchPair() {
	o := v.video
	if o == nil {
		o = v.audio
	}
	if v.ss.srv.udp == nil || o == nil || o.sender.Transport() == nil {
		return
	}
	it := o.sender.Transport().ICETransport()
	update := func() {
		v.pairMu.Lock()
		defer v.pairMu.Unlock()
		if v.pairDone {
			return
		}
		var k *cork
		var peer *netip.AddrPort
		if p, err := it.GetSelectedCandidatePair(); err == nil && p != nil && p.Remote != nil && p.Remote.Protocol == pwebrtc.ICEProtocolUDP {
			if ip, err := netip.ParseAddr(p.Remote.Address); err == nil {
				a := netip.AddrPortFrom(ip.Unmap(), p.Remote.Port)
				k, peer = v.ss.srv.udp.corkFor(a), &a
			}
		}
		v.udpPeer.Store(peer)
		v.ss.srv.udp.release(v.cork.Swap(k))
	}
	it.OnSelectedCandidatePairChange(func(*pwebrtc.ICECandidatePair) {
		defer guard.Recover(v.ss.log, "webrtc pair change")
		update()
	})
	update()
}

// unwatchPair stops batching for the viewer.
func (v *viewer) unwatchPair() {
	v.pairMu.Lock()
	defer v.pairMu.Unlock()
	v.pairDone = true
	v.udpPeer.Store(nil)
	if v.ss.srv.udp != nil {
		v.ss.srv.udp.release(v.cork.Swap(nil))
	}
}

// send writes one unit to the viewer.
func (v *viewer) send(u *media.Unit) error {
	if u.Track.Session != v.session {
		// A new publisher: its track IDs may be laid out differently. Take
		// the first track of each kind it sends, as the FLV muxer does.
		v.session, v.videoID, v.audioID = u.Track.Session, -1, -1
	}
	var o *outTrack
	switch {
	case v.video != nil && u.Track.Codec == v.video.codec && (v.videoID < 0 || u.Track.ID == v.videoID):
		if u.PTS != u.DTS {
			return errBFrames
		}
		o, v.videoID = v.video, u.Track.ID
	case v.audio != nil && v.companion == nil && u.Track.Codec == media.CodecOpus && (v.audioID < 0 || u.Track.ID == v.audioID):
		o, v.audioID = v.audio, u.Track.ID
	default:
		return nil // a track this viewer does not get (or a second one of a kind)
	}
	var recs []byte
	if o.codec == media.CodecOpus {
		return o.writeOpus(u)
	}
	recs = rtpPayloads(u, o.codec)
	ts := rtpTime(u.PTS, o.clock)
	for len(recs) >= 3 {
		n := int(binary.BigEndian.Uint16(recs))
		if len(recs) < 3+n {
			break
		}
		if err := o.write(recs[2] != 0, recs[3:3+n:3+n], ts); err != nil {
			return err
		}
		recs = recs[3+n:]
	}
	return nil
}

// rtpTime converts a hub time to an RTP clock, overflow-safe.
func rtpTime(d time.Duration, clock int64) uint32 {
	return uint32(int64(d/time.Second)*clock + int64(d%time.Second)*clock/int64(time.Second))
}

// writeOpus sends an Opus unit as one packet (one that does not fit is
// not sent).
func (o *outTrack) writeOpus(u *media.Unit) error {
	if len(u.Payload) == 0 || len(u.Payload[0]) > maxPayload {
		return nil
	}
	return o.write(false, u.Payload[0], rtpTime(u.PTS, o.clock))
}

// write sends one packet and keeps it for NACKs.
func (o *outTrack) write(marker bool, payload []byte, ts uint32) error {
	o.mu.Lock()
	seq := o.seq
	o.seq++
	o.hist[seq%histSize] = sent{ok: true, seq: seq, ts: ts, marker: marker, payload: payload}
	o.sentPkts++
	o.octets += uint64(len(payload))
	o.resendTokens = min(o.resendTokens+resendShare, resendBurst)
	if !o.stamped || o.tsBase+ts != o.lastTS {
		// One clock reading per unit, not per packet.
		o.lastTS, o.lastAt, o.stamped = o.tsBase+ts, time.Now(), true
	}
	o.mu.Unlock()
	if err := o.send(marker, seq, o.tsBase+ts, payload); err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			return errPeerClosed
		}
		return fmt.Errorf("webrtc: write: %w", err)
	}
	return nil
}

// directTrack is a TrackLocalStaticRTP whose one binding (a viewer's
// PeerConnection binds a track once) is written directly: no packet copy
// from a pool, no lock over a list of bindings, no error slice per packet.
type directTrack struct {
	*pwebrtc.TrackLocalStaticRTP
	bound atomic.Pointer[trackBinding]
}

// trackBinding is what a write needs of the negotiated track.
type trackBinding struct {
	id   string
	ssrc uint32
	pt   uint8
	ws   pwebrtc.TrackLocalWriter
}

// Bind lets pion's track match the codec, and keeps the binding.
func (t *directTrack) Bind(ctx pwebrtc.TrackLocalContext) (pwebrtc.RTPCodecParameters, error) {
	c, err := t.TrackLocalStaticRTP.Bind(ctx)
	if err == nil {
		t.bound.Store(&trackBinding{id: ctx.ID(), ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), ws: ctx.WriteStream()})
	}
	return c, err
}

// Unbind forgets the binding.
func (t *directTrack) Unbind(ctx pwebrtc.TrackLocalContext) error {
	if b := t.bound.Load(); b != nil && b.id == ctx.ID() {
		t.bound.CompareAndSwap(b, nil)
	}
	return t.TrackLocalStaticRTP.Unbind(ctx)
}

// reportInterval is how often a viewer gets sender reports (players
// sync audio and video by them), as pion's report interceptor sends them.
const reportInterval = time.Second

// senderReport returns o's sender report at now; false before o sent
// anything (or was bound).
func (o *outTrack) senderReport(now time.Time) (*rtcp.SenderReport, bool) {
	b := o.track.bound.Load()
	o.mu.Lock()
	defer o.mu.Unlock()
	pkts := o.sentPkts + o.resent
	if b == nil || !o.stamped || pkts == o.reportedPkts {
		return nil, false // nothing sent since the last report (RFC 3550, 6.4)
	}
	o.reportedPkts = pkts
	// The RTP time of now: the newest packet's, advanced by the time
	// since it was sent.
	ts := o.lastTS + rtpTime(now.Sub(o.lastAt), o.clock)
	return &rtcp.SenderReport{SSRC: b.ssrc, NTPTime: ntpTime(now), RTPTime: ts,
		PacketCount: uint32(pkts), OctetCount: uint32(o.octets)}, true
}

// ntpTime is t in the 64-bit NTP format of sender reports.
func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix() + 2208988800) // 1900 to 1970
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}

// sendReports sends the viewer's sender reports when reportInterval has
// passed since the last ones (the send loop's, after a batch).
func (v *viewer) sendReports(now time.Time) {
	if now.Sub(v.reportAt) < reportInterval {
		return
	}
	v.reportAt = now
	var pkts []rtcp.Packet
	for _, o := range []*outTrack{v.video, v.audio} {
		if o == nil {
			continue
		}
		if sr, ok := o.senderReport(now); ok {
			pkts = append(pkts, sr)
		}
	}
	if len(pkts) > 0 {
		v.ss.pc.WriteRTCP(pkts) //nolint:errcheck // the next ones follow in a second
	}
}

// send sends one packet: encrypted by the viewer itself on a UDP pair
// (srtpout.go), else through pion's write stream of the track's binding;
// nothing before negotiation binds the track.
func (o *outTrack) send(marker bool, seq uint16, ts uint32, payload []byte) error {
	v := o.v
	b := o.track.bound.Load()
	if b == nil {
		return nil
	}
	if a := v.udpPeer.Load(); a != nil && !v.pionUsed.Load() {
		if s := v.ownSRTP(); s != nil {
			v.ownUsed.Store(true)
			return s.write(v, *a, b, marker, seq, ts, payload)
		}
	} else if v.ownUsed.Load() {
		return errPairMoved
	}
	v.pionUsed.Store(true)
	return writePion(b, marker, seq, ts, payload)
}

// writePion sends one packet through pion's write stream. Its header
// escapes to the heap (an interface call), so the own path, which sends
// nearly every packet, builds its header in the sender instead.
func writePion(b *trackBinding, marker bool, seq uint16, ts uint32, payload []byte) error {
	h := &rtp.Header{Version: 2, Marker: marker, PayloadType: b.pt, SequenceNumber: seq, Timestamp: ts, SSRC: b.ssrc}
	_, err := b.ws.WriteRTP(h, payload)
	return err
}

// readRTCP answers NACKs from the history and forwards keyframe requests
// upstream, until the PeerConnection closes.
func (o *outTrack) readRTCP() {
	v := o.v
	defer v.wg.Done()
	defer guard.Recover(v.ss.log, "webrtc rtcp")
	var ssrc uint32 // ours: receiver reports carry a block per stream received
	if enc := o.sender.GetParameters().Encodings; len(enc) > 0 {
		ssrc = uint32(enc[0].SSRC)
	}
	var again []sent
	for {
		pkts, _, err := o.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				again = again[:0]
				now := time.Now().UnixNano()
				o.mu.Lock()
				for _, pair := range p.Nacks {
					for _, seq := range pair.PacketList() {
						h := &o.hist[seq%histSize]
						if !h.ok || h.seq != seq || now-h.resentAt < int64(resendGap) || o.resendTokens < 1 {
							continue
						}
						o.resendTokens--
						h.resentAt = now
						again = append(again, *h)
					}
				}
				o.resent += uint64(len(again))
				for _, h := range again {
					o.octets += uint64(len(h.payload))
				}
				o.mu.Unlock()
				for _, h := range again {
					o.send(h.marker, h.seq, o.tsBase+h.ts, h.payload) //nolint:errcheck // a lost resend is NACKed again
				}
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.forwardPLI()
			case *rtcp.ReceiverReport:
				for _, rr := range p.Reports {
					if rr.SSRC == ssrc {
						o.mu.Lock()
						o.lost = uint64(rr.TotalLost)
						o.mu.Unlock()
					}
				}
			}
		}
	}
}

// forwardPLI asks the publisher for a keyframe, at most once per
// minViewerPLIGap for this viewer (the publisher rate-limits all of them).
func (v *viewer) forwardPLI() {
	v.pliMu.Lock()
	now := time.Now()
	ok := now.Sub(v.pliAt) >= minViewerPLIGap
	if ok {
		v.pliAt = now
	}
	v.pliMu.Unlock()
	if ok {
		v.r.Stream().RequestKeyframe()
	}
}

// rtpMemo is the Unit.Memo key of a unit's RTP payloads.
type rtpMemo struct{ codec media.Codec }

// rtpPayloads returns u's RTP payloads (packetize's records), made once
// per unit. RTP payloads carry no time: a unit retimed for a catch-up
// join (u.Orig) shares its original's, so the cached GOP a viewer joins
// with is not packetized again for each viewer.
func rtpPayloads(u *media.Unit, c media.Codec) []byte {
	if u.Orig != nil {
		u = u.Orig
	}
	return u.Memo(rtpMemo{c}, packetize)
}

// packetizers make RTP payloads. The library encoders keep a sequence
// number, which we do not use, so one per codec serves every stream.
var packetizers = struct {
	sync.Mutex
	h264 *rtph264.Encoder
	h265 *rtph265.Encoder
	av1  *rtpav1.Encoder
}{}

// packetize returns the RTP payloads of a video unit as records of
// [2-byte length][1-byte marker][payload], the form Memo keeps.
func packetize(u *media.Unit) []byte {
	var payload [][]byte
	for _, p := range u.Payload {
		if len(p) > 0 {
			payload = append(payload, p)
		}
	}
	if len(payload) == 0 {
		return nil
	}
	pz := &packetizers
	pz.Lock()
	var pkts []*rtp.Packet
	var err error
	switch u.Track.Codec {
	case media.CodecH264:
		if pz.h264 == nil {
			pz.h264 = &rtph264.Encoder{PayloadType: 96, PayloadMaxSize: maxPayload, PacketizationMode: 1}
			pz.h264.Init() //nolint:errcheck // fixed, valid settings
		}
		pkts, err = pz.h264.Encode(payload)
	case media.CodecH265:
		if pz.h265 == nil {
			pz.h265 = &rtph265.Encoder{PayloadType: 96, PayloadMaxSize: maxPayload}
			pz.h265.Init() //nolint:errcheck // fixed, valid settings
		}
		pkts, err = pz.h265.Encode(payload)
	case media.CodecAV1:
		if pz.av1 == nil {
			pz.av1 = &rtpav1.Encoder{PayloadType: 96, PayloadMaxSize: maxPayload}
			pz.av1.Init() //nolint:errcheck // fixed, valid settings
		}
		pkts, err = pz.av1.Encode(payload)
	}
	pz.Unlock()
	if err != nil {
		return nil
	}
	n := 0
	for _, p := range pkts {
		n += 3 + len(p.Payload)
	}
	out := make([]byte, 0, n)
	for _, p := range pkts {
		m := byte(0)
		if p.Marker {
			m = 1
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(p.Payload)))
		out = append(out, m)
		out = append(out, p.Payload...)
	}
	return out
}

// link returns the viewer's figures for the API and the metrics.
func (v *viewer) link() server.LinkStats {
	ls := server.LinkStats{RTTMs: v.ss.rttMs()}
	for _, o := range []*outTrack{v.video, v.audio} {
		if o != nil {
			o.mu.Lock()
			ls.LostPackets += o.lost
			ls.Retransmitted += o.resent
			o.mu.Unlock()
		}
	}
	return ls
}
