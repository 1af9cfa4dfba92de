// Command whepload opens N WHEP viewers of one stream in one process (pion
// PeerConnections) and reports how fast each got its first video packet and
// keyframe, what it received and how many packets went missing.
//
//	go run ./bench/whepload -url http://127.0.0.1:8080/live/test/whep -n 200 -t 20s
//
// Each viewer POSTs a recvonly offer (H.264 and Opus (+G.711), ICE candidates
// gathered before the POST, no trickle), applies the answer, waits for ICE
// and DTLS, and reads RTP from both tracks with one goroutine per track.
// It parses only the 12-byte RTP header (sequence numbers for gaps) and, up
// to the first keyframe, the H.264 NAL type; nothing is depacketized.
// By default the viewers have pion's default interceptors, so they send
// what a browser sends: NACKs, receiver reports and transport-wide
// congestion control feedback (the server's NACK handling is part of the
// load). A lost packet counts as lost when the gap is seen; a resent one
// arrives later and counts as reordered. -rtcp=false leaves out every
// interceptor: no RTCP at all, a lost packet stays lost. On exit each
// viewer DELETEs its session (the Location of the answer) and closes.
//
// The viewers start spread over -ramp (or at -rate per second), and each
// reads for -t from its own start, like bench/flvload. It prints a text
// summary and, with -json FILE, the same figures as JSON; the tool's own
// CPU time is in both, so a run on a shared machine shows what the load
// generator took from the server.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/streamhub/streamhub/bench/internal/stats"
)

// trackStats is what one track of one viewer received.
type trackStats struct {
	packets  int64
	bytes    int64 // RTP packets, headers included (after SRTP)
	lost     int64 // sequence numbers skipped (forward jumps)
	reorder  int64 // packets at or behind the highest sequence number seen
	gaps     int64 // forward jumps (lost runs)
	first    time.Duration
	firstKey time.Duration // video: first packet of a keyframe (IDR or SPS)
}

// result is one viewer's outcome.
type result struct {
	posted    bool          // 201 answer received
	connected bool          // PeerConnection reached "connected"
	answer    time.Duration // POST → 201
	connect   time.Duration // POST → connected (ICE + DTLS)
	video     trackStats
	audio     trackStats
	err       error
	deleted   bool
}

// Summary is what whepload reports.
type Summary struct {
	URL         string   `json:"url"`
	Viewers     int      `json:"viewers"`
	Answered    int      `json:"answered"`
	Connected   int      `json:"connected"`
	WithVideo   int      `json:"with_video"`
	WithAudio   int      `json:"with_audio"`
	Deleted     int      `json:"deleted"`
	Errors      int      `json:"errors"`
	FirstErrors []string `json:"first_errors,omitempty"`
	DurationS   float64  `json:"duration_s"`
	ReadS       float64  `json:"read_s"` // -t: how long each viewer reads

	AnswerMedian      float64 `json:"answer_ms_median"`
	AnswerP95         float64 `json:"answer_ms_p95"`
	ConnectMedian     float64 `json:"connected_ms_median"` // POST → ICE+DTLS connected
	ConnectP95        float64 `json:"connected_ms_p95"`
	FirstVideoMedian  float64 `json:"first_video_packet_ms_median"` // POST → first video RTP packet
	FirstVideoP95     float64 `json:"first_video_packet_ms_p95"`
	FirstVideoMax     float64 `json:"first_video_packet_ms_max"`
	FirstKeyMedian    float64 `json:"first_keyframe_packet_ms_median"` // POST → first packet of a keyframe
	FirstKeyP95       float64 `json:"first_keyframe_packet_ms_p95"`
	FirstAudioMedian  float64 `json:"first_audio_packet_ms_median"`
	KeyWithin1s       int     `json:"viewers_with_keyframe_within_1s"`
	VideoPackets      int64   `json:"video_packets"`
	AudioPackets      int64   `json:"audio_packets"`
	BytesTotal        int64   `json:"bytes_total"`
	KbpsMedian        float64 `json:"per_viewer_kbps_median"`
	KbpsMin           float64 `json:"per_viewer_kbps_min"`
	VideoLost         int64   `json:"video_packets_lost"`
	AudioLost         int64   `json:"audio_packets_lost"`
	VideoLossPct      float64 `json:"video_loss_pct"`
	ViewersWithLoss   int     `json:"viewers_with_loss"`
	Gaps              int64   `json:"gaps"`
	Reordered         int64   `json:"reordered_packets"`
	RTCP              bool    `json:"rtcp"`       // the viewers sent NACKs, receiver reports, TWCC
	ToolCPUS          float64 `json:"tool_cpu_s"` // this process, user+system
	ToolCPUPerViewerS float64 `json:"tool_cpu_ms_per_viewer_second"`
}

type options struct {
	url      string
	n        int
	d        time.Duration
	ramp     time.Duration
	key      string
	loopback bool
	rcvbuf   int
	rtcp     bool
	jsonOut  string
	cpuProf  string
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "WHEP endpoint: http://HOST:PORT/PATH/whep")
	flag.IntVar(&o.n, "n", 100, "number of viewers")
	flag.DurationVar(&o.d, "t", 20*time.Second, "how long each viewer reads, from its own start")
	flag.DurationVar(&o.ramp, "ramp", 2*time.Second, "spread the starts over this long")
	rate := flag.Float64("rate", 0, "start this many viewers per second instead of -ramp (0: use -ramp)")
	flag.StringVar(&o.key, "key", "", "stream key, sent as Authorization: Bearer KEY")
	flag.BoolVar(&o.loopback, "loopback", false, "also gather 127.0.0.1 candidates")
	flag.IntVar(&o.rcvbuf, "rcvbuf", 4<<20, "SO_RCVBUF of each viewer's UDP socket (capped by net.core.rmem_max): the cached GOP arrives as one burst")
	flag.BoolVar(&o.rtcp, "rtcp", true, "pion's default interceptors (NACKs, receiver reports, TWCC) as a browser; false: no RTCP at all")
	flag.StringVar(&o.jsonOut, "json", "", "also write the summary as JSON to this file")
	flag.StringVar(&o.cpuProf, "cpuprofile", "", "write this tool's CPU profile to this file")
	flag.Parse()
	if o.url == "" || o.n < 1 {
		fmt.Fprintln(os.Stderr, "whepload: -url is required and -n must be at least 1")
		flag.Usage()
		os.Exit(2)
	}
	if pu, err := url.Parse(o.url); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
		fmt.Fprintln(os.Stderr, "whepload: -url must be http(s)://HOST/PATH/whep")
		os.Exit(2)
	}
	if *rate > 0 {
		o.ramp = time.Duration(float64(o.n) / *rate * float64(time.Second))
	}

	api, err := newAPI(o.loopback, o.rcvbuf, o.rtcp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "whepload:", err)
		os.Exit(1)
	}
	if o.cpuProf != "" {
		f, err := os.Create(o.cpuProf)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "whepload:", err)
			os.Exit(1)
		}
	}
	cpu0 := cpuTime()
	ctx, cancel := context.WithTimeout(context.Background(), o.d+o.ramp+30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 15 * time.Second}
	results := make([]result, o.n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range o.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.n > 1 {
				time.Sleep(o.ramp * time.Duration(i) / time.Duration(o.n))
			}
			rctx, rcancel := context.WithTimeout(ctx, o.d)
			defer rcancel()
			results[i] = view(rctx, api, client, o)
		}()
	}
	wg.Wait()
	if o.cpuProf != "" {
		pprof.StopCPUProfile()
	}
	s := summarize(o, results)
	s.DurationS = time.Since(start).Seconds()
	s.ToolCPUS = (cpuTime() - cpu0).Seconds()
	s.ToolCPUPerViewerS = 1000 * s.ToolCPUS / (float64(o.n) * o.d.Seconds())
	printText(s)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "whepload:", err)
			os.Exit(1)
		}
	}
}

// bufNet is the standard network with a bigger receive buffer on every
// UDP socket ICE opens.
type bufNet struct {
	*stdnet.Net
	rcvbuf int
}

func (n bufNet) ListenUDP(network string, a *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, a)
	if err == nil && n.rcvbuf > 0 {
		c.SetReadBuffer(n.rcvbuf) //nolint:errcheck // best effort
	}
	return c, err
}

// newAPI is a pion API with H.264 and Opus, UDP over IPv4 only and no
// mDNS; with rtcp pion's default interceptors, otherwise none.
func newAPI(loopback bool, rcvbuf int, rtcp bool) (*pwebrtc.API, error) {
	m := &pwebrtc.MediaEngine{}
	// H.264 as a browser offers it: the usual profiles, packetization
	// mode 1 (some servers match the source's profile).
	for i, profile := range []string{"42e01f", "42001f", "4d001f", "64001f", "640c1f"} {
		if err := m.RegisterCodec(pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{
			MimeType: pwebrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile},
			PayloadType: pwebrtc.PayloadType(102 + 2*i)}, pwebrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	// Opus, and G.711 as browsers offer it (a server may answer with it
	// when the source's audio is not Opus).
	for _, c := range []pwebrtc.RTPCodecParameters{
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},
	} {
		if err := m.RegisterCodec(c, pwebrtc.RTPCodecTypeAudio); err != nil {
			return nil, err
		}
	}
	se := pwebrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(loopback)
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	se.SetNet(bufNet{Net: n, rcvbuf: rcvbuf})
	opts := []func(*pwebrtc.API){pwebrtc.WithMediaEngine(m), pwebrtc.WithSettingEngine(se)}
	if !rtcp {
		// NewAPI registers the default interceptors only when given no registry.
		opts = append(opts, pwebrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	}
	return pwebrtc.NewAPI(opts...), nil
}

// view is one viewer, until ctx ends.
func view(ctx context.Context, api *pwebrtc.API, client *http.Client, o options) (res result) {
	pc, err := api.NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		res.err = err
		return res
	}
	var closeOnce sync.Once
	closePC := func() { closeOnce.Do(func() { pc.Close() }) } //nolint:errcheck // closing
	defer closePC()
	for _, k := range []pwebrtc.RTPCodecType{pwebrtc.RTPCodecTypeVideo, pwebrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			res.err = err
			return res
		}
	}
	connected := make(chan struct{})
	failed := make(chan struct{})
	var t0 time.Time // the POST; set before any callback can use it
	var connectedAt atomic.Int64
	pc.OnConnectionStateChange(func(s pwebrtc.PeerConnectionState) {
		switch s {
		case pwebrtc.PeerConnectionStateConnected:
			if connectedAt.CompareAndSwap(0, int64(time.Since(t0))) {
				close(connected)
			}
		case pwebrtc.PeerConnectionStateFailed:
			select {
			case <-failed:
			default:
				close(failed)
			}
		}
	})
	var readers sync.WaitGroup
	var readersMu sync.Mutex
	closing := false
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
		readersMu.Lock()
		if closing {
			readersMu.Unlock()
			return
		}
		readers.Add(1)
		readersMu.Unlock()
		defer readers.Done()
		st := &res.audio
		video := tr.Kind() == pwebrtc.RTPCodecTypeVideo
		if video {
			st = &res.video
		}
		readTrack(tr, st, video, t0)
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		res.err = err
		return res
	}
	gathered := pwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		res.err = err
		return res
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		res.err = errors.New("ICE gathering did not complete")
		return res
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, o.url, strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	if o.key != "" {
		req.Header.Set("Authorization", "Bearer "+o.key)
	}
	t0 = time.Now()
	resp, err := client.Do(req)
	if err != nil {
		res.err = err
		return res
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		res.err = fmt.Errorf("POST: %s: %s", resp.Status, strings.TrimSpace(string(body)))
		return res
	}
	res.posted = true
	res.answer = time.Since(t0)
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		res.err = errors.New("POST: no Location in the answer")
		return res
	}
	defer func() {
		// End the session, with a context of its own: ctx is over.
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		req, _ := http.NewRequestWithContext(dctx, http.MethodDelete, loc.String(), nil)
		if o.key != "" {
			req.Header.Set("Authorization", "Bearer "+o.key)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			res.deleted = resp.StatusCode/100 == 2
		}
		readersMu.Lock()
		closing = true
		readersMu.Unlock()
		closePC()
		readers.Wait()
	}()
	if err := pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		res.err = fmt.Errorf("answer: %w", err)
		return res
	}
	select {
	case <-connected:
		res.connected = true
		res.connect = time.Duration(connectedAt.Load())
	case <-failed:
		res.err = errors.New("ICE/DTLS failed")
		return res
	case <-ctx.Done():
		res.err = errors.New("not connected before the end of the run")
		return res
	}
	select {
	case <-ctx.Done():
	case <-failed:
		res.err = errors.New("connection failed while reading")
	}
	return res
}

// readTrack counts one track's packets until the PeerConnection closes. It
// is the track's only reader, so st needs no lock; view reads st only after
// readers.Wait.
func readTrack(tr *pwebrtc.TrackRemote, st *trackStats, video bool, t0 time.Time) {
	buf := make([]byte, 1600)
	var last uint16
	started := false
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if n < 12 {
			continue
		}
		p := buf[:n]
		st.packets++
		st.bytes += int64(n)
		seq := binary.BigEndian.Uint16(p[2:4])
		if !started {
			started = true
			st.first = time.Since(t0)
		} else {
			switch d := seq - last; {
			case d == 0 || d >= 0x8000: // a duplicate, or behind the highest seen
				st.reorder++
				continue
			case d > 1:
				st.lost += int64(d - 1)
				st.gaps++
			}
		}
		last = seq
		if video && st.firstKey == 0 && isH264Key(rtpPayload(p)) {
			st.firstKey = time.Since(t0)
		}
	}
}

// rtpPayload returns the payload of an RTP packet, or nil.
func rtpPayload(b []byte) []byte {
	if len(b) < 12 {
		return nil
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < off+4 {
			return nil
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 && end > off {
		end -= int(b[end-1])
	}
	if off >= end {
		return nil
	}
	return b[off:end]
}

// isH264Key reports whether an H.264 RTP payload starts or holds an IDR
// slice or an SPS (single NAL, STAP-A, or the start of an FU-A).
func isH264Key(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case 5, 7:
		return true
	case 24: // STAP-A
		for q := p[1:]; len(q) > 2; {
			n := int(binary.BigEndian.Uint16(q))
			if n == 0 || len(q) < 2+n {
				return false
			}
			if nt := q[2] & 0x1f; nt == 5 || nt == 7 {
				return true
			}
			q = q[2+n:]
		}
	case 28: // FU-A
		return p[1]&0x80 != 0 && p[1]&0x1f == 5
	}
	return false
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func summarize(o options, rs []result) Summary {
	s := Summary{URL: o.url, Viewers: len(rs), ReadS: o.d.Seconds(), RTCP: o.rtcp}
	var answer, connect, firstV, firstK, firstA, kbps []float64
	var sentV int64
	for _, r := range rs {
		if r.posted {
			s.Answered++
			answer = append(answer, ms(r.answer))
		}
		if r.connected {
			s.Connected++
			connect = append(connect, ms(r.connect))
		}
		if r.deleted {
			s.Deleted++
		}
		if r.err != nil {
			s.Errors++
			if len(s.FirstErrors) < 5 {
				s.FirstErrors = append(s.FirstErrors, r.err.Error())
			}
		}
		if r.video.packets > 0 {
			s.WithVideo++
			firstV = append(firstV, ms(r.video.first))
		}
		if r.video.firstKey > 0 {
			firstK = append(firstK, ms(r.video.firstKey))
			if r.video.firstKey <= time.Second {
				s.KeyWithin1s++
			}
		}
		if r.audio.packets > 0 {
			s.WithAudio++
			firstA = append(firstA, ms(r.audio.first))
		}
		s.VideoPackets += r.video.packets
		s.AudioPackets += r.audio.packets
		s.BytesTotal += r.video.bytes + r.audio.bytes
		s.VideoLost += r.video.lost
		s.AudioLost += r.audio.lost
		s.Gaps += r.video.gaps + r.audio.gaps
		s.Reordered += r.video.reorder + r.audio.reorder
		sentV += r.video.packets + r.video.lost
		if r.video.lost+r.audio.lost > 0 {
			s.ViewersWithLoss++
		}
		if r.connected {
			kbps = append(kbps, float64(r.video.bytes+r.audio.bytes)*8/1000/o.d.Seconds())
		}
	}
	if sentV > 0 {
		s.VideoLossPct = 100 * float64(s.VideoLost) / float64(sentV)
	}
	s.AnswerMedian, s.AnswerP95 = stats.Pct(answer, 50), stats.Pct(answer, 95)
	s.ConnectMedian, s.ConnectP95 = stats.Pct(connect, 50), stats.Pct(connect, 95)
	s.FirstVideoMedian, s.FirstVideoP95, s.FirstVideoMax = stats.Pct(firstV, 50), stats.Pct(firstV, 95), stats.Pct(firstV, 100)
	s.FirstKeyMedian, s.FirstKeyP95 = stats.Pct(firstK, 50), stats.Pct(firstK, 95)
	s.FirstAudioMedian = stats.Pct(firstA, 50)
	s.KbpsMedian, s.KbpsMin = stats.Pct(kbps, 50), stats.Pct(kbps, 0)
	return s
}

func printText(s Summary) {
	var b strings.Builder
	fmt.Fprintf(&b, "url                      %s\n", s.URL)
	fmt.Fprintf(&b, "viewers                  %d answered, %d connected / %d (errors %d, deleted %d)\n", s.Answered, s.Connected, s.Viewers, s.Errors, s.Deleted)
	for _, e := range s.FirstErrors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	fmt.Fprintf(&b, "with video / audio       %d / %d viewers\n", s.WithVideo, s.WithAudio)
	fmt.Fprintf(&b, "POST -> 201 answer       median %.1f ms, p95 %.1f ms\n", s.AnswerMedian, s.AnswerP95)
	fmt.Fprintf(&b, "POST -> connected        median %.1f ms, p95 %.1f ms (ICE + DTLS)\n", s.ConnectMedian, s.ConnectP95)
	fmt.Fprintf(&b, "POST -> 1st video pkt    median %.1f ms, p95 %.1f ms, max %.1f ms\n", s.FirstVideoMedian, s.FirstVideoP95, s.FirstVideoMax)
	fmt.Fprintf(&b, "POST -> keyframe pkt     median %.1f ms, p95 %.1f ms (%d within 1 s)\n", s.FirstKeyMedian, s.FirstKeyP95, s.KeyWithin1s)
	fmt.Fprintf(&b, "POST -> 1st audio pkt    median %.1f ms\n", s.FirstAudioMedian)
	fmt.Fprintf(&b, "per-viewer throughput    median %.0f kbit/s, min %.0f kbit/s\n", s.KbpsMedian, s.KbpsMin)
	fmt.Fprintf(&b, "packets video / audio    %d / %d (%d bytes)\n", s.VideoPackets, s.AudioPackets, s.BytesTotal)
	fmt.Fprintf(&b, "lost video / audio       %d / %d packets (video %.3f %%), %d gaps, %d viewers with loss, %d reordered (resent, with -rtcp)\n",
		s.VideoLost, s.AudioLost, s.VideoLossPct, s.Gaps, s.ViewersWithLoss, s.Reordered)
	fmt.Fprintf(&b, "whepload CPU             %.2f s; %.3f ms per viewer-second\n", s.ToolCPUS, s.ToolCPUPerViewerS)
	fmt.Print(b.String())
}
