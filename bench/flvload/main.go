// Command flvload opens N HTTP-FLV (or RTMP) readers on one stream and
// reports how fast each got its first keyframe, what it received, and how
// far behind live a player that starts at that keyframe would run.
//
//	go run ./bench/flvload -url http://127.0.0.1:8080/live/test.flv -n 1000 -t 20s
//	go run ./bench/flvload -url rtmp://127.0.0.1:1935/live/test -n 200 -t 20s
//	go run ./bench/flvload -url rtsp://127.0.0.1:8554/live/test -n 200 -t 20s   (RTP over TCP)
//	go run ./bench/flvload -url srt://127.0.0.1:8890/live/test -n 200 -t 20s    (MPEG-TS, stream ID read:live/test)
//
// It prints a text summary and, with -json FILE, the same figures as JSON.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	gosrt "github.com/datarhei/gosrt"
	"github.com/pion/rtp"

	"github.com/streamhub/streamhub/bench/internal/stats"
	flv "github.com/streamhub/streamhub/protocols/httpflv"
)

// result is one reader's outcome.
type result struct {
	connected     bool
	firstKey      time.Duration // from dial to the first video keyframe; 0 if none
	bytes         int64
	err           error
	ccErrors      int             // SRT: continuity-counter gaps after each PID's first packet
	srtDrops      uint64          // SRT: packets the receiver dropped (too late or never retransmitted)
	playoutDelays []time.Duration // sampled: how long each frame would wait in a real-time player
	// HTTP-FLV: the media time of the pictures received, and from it the
	// media seconds delivered per second (mediaClock.rate)
	clock     mediaClock
	mediaRate float64
}

// Summary is what flvload reports.
type Summary struct {
	URL            string   `json:"url"`
	Readers        int      `json:"readers"`
	Connected      int      `json:"connected"`
	Errors         int      `json:"errors"`
	FirstErrors    []string `json:"first_errors,omitempty"`
	DurationS      float64  `json:"duration_s"`
	FirstKeyMedian float64  `json:"first_keyframe_ms_median"`
	FirstKeyP95    float64  `json:"first_keyframe_ms_p95"`
	FirstKeyMax    float64  `json:"first_keyframe_ms_max"`
	KeyWithin1s    int      `json:"readers_with_keyframe_within_1s"`
	BytesTotal     int64    `json:"bytes_total"`
	KbpsMedian     float64  `json:"per_reader_kbps_median"`
	KbpsMin        float64  `json:"per_reader_kbps_min"`
	// MediaRate*: HTTP-FLV readers' media seconds received per second
	// from 2 s after their first keyframe to their end (1: at the live
	// rate; 0 for a reader that stalled or got no keyframe);
	// MediaRateBelow99 counts the readers under 0.99.
	MediaRateMedian  float64 `json:"media_rate_median,omitempty"`
	MediaRateMin     float64 `json:"media_rate_min"`
	MediaRateBelow99 int     `json:"media_rate_below_0_99"`
	PlayoutDelayMed  float64 `json:"playout_delay_ms_median"`
	PlayoutDelayP95  float64 `json:"playout_delay_ms_p95"`
	// CCErrors counts, over all SRT readers, the MPEG-TS continuity-counter
	// gaps after each PID's first packet (0 for the other protocols).
	CCErrors int `json:"ts_cc_errors"`
	// SRTRecvDrops is the packets the SRT readers' receivers dropped (too
	// late to play, or lost for good): each is a TS gap the server did not make.
	SRTRecvDrops uint64 `json:"srt_receiver_drops"`
}

func main() {
	u := flag.String("url", "", "stream URL: http://HOST:PORT/PATH.flv or rtmp://HOST:PORT/PATH")
	n := flag.Int("n", 100, "number of readers")
	d := flag.Duration("t", 20*time.Second, "how long each reader reads")
	ramp := flag.Duration("ramp", 2*time.Second, "spread the connects over this long")
	jsonOut := flag.String("json", "", "also write the summary as JSON to this file")
	flag.Parse()
	if *u == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "flvload: -url is required and -n must be at least 1")
		flag.Usage()
		os.Exit(2)
	}
	pu, err := url.Parse(*u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "rtmp" && pu.Scheme != "rtsp" && pu.Scheme != "srt") {
		fmt.Fprintln(os.Stderr, "flvload: -url must be http://...flv, rtmp://..., rtsp://... or srt://HOST:PORT/PATH")
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *d+*ramp+15*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: -1, DisableCompression: true, DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	results := make([]result, *n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if *n > 1 {
				time.Sleep(*ramp * time.Duration(i) / time.Duration(*n))
			}
			rctx, rcancel := context.WithTimeout(ctx, *d)
			defer rcancel()
			switch pu.Scheme {
			case "http":
				results[i] = readFLV(rctx, client, *u, i%10 == 0)
			case "rtmp":
				results[i] = readRTMP(rctx, pu)
			case "srt":
				results[i] = readSRT(rctx, pu)
			default:
				results[i] = readRTSP(rctx, *u)
			}
		}()
	}
	wg.Wait()
	s := summarize(*u, results, *d)
	s.DurationS = time.Since(start).Seconds()
	printText(s)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "flvload:", err)
			os.Exit(1)
		}
	}
}

// readFLV reads one HTTP-FLV stream until ctx ends. When sample is set it
// parses every tag to estimate the playout delay; otherwise it only
// follows the tags' boundaries and headers (keeping the load tool's own CPU
// low). Both note the media time received (result.mediaRate).
func readFLV(ctx context.Context, client *http.Client, u string, sample bool) (res result) {
	t0 := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := client.Do(req)
	if err != nil {
		res.err = err
		return res
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		res.err = fmt.Errorf("HTTP %s", resp.Status)
		return res
	}
	res.connected = true
	cr := &countingReader{r: resp.Body}
	defer func() { res.bytes, res.mediaRate = cr.n, res.clock.rate(time.Now()) }()
	if !sample {
		// The tags' boundaries only: the bytes are not copied again.
		w := newTagWalker(&res.clock)
		buf := make([]byte, 64<<10)
		for {
			n, err := cr.Read(buf)
			if werr := w.feed(buf[:n], time.Now()); werr != nil {
				res.err = werr
				return res
			}
			if res.firstKey == 0 && !res.clock.keyAt.IsZero() {
				res.firstKey = res.clock.keyAt.Sub(t0)
			}
			if err != nil {
				if !isEnd(ctx, err) {
					res.err = err
				}
				return res
			}
		}
	}
	fr, err := flv.NewReader(cr)
	if err != nil {
		res.err = err
		return res
	}
	var w0 time.Time
	var m0 uint32
	for {
		tag, err := fr.Read()
		if err != nil {
			if !isEnd(ctx, err) {
				res.err = err
			}
			return res
		}
		now := time.Now()
		res.clock.video(&tag, now)
		if res.firstKey == 0 && !res.clock.keyAt.IsZero() {
			res.firstKey = now.Sub(t0)
			w0, m0 = now, res.clock.first
		}
		if res.firstKey > 0 && tag.Type == flv.TagVideo && !tag.IsConfig() {
			// A player that starts showing the first keyframe on arrival and
			// then runs in real time shows this frame at w0 + (ts - m0); the
			// frame waits that minus its arrival time in the player's buffer.
			show := w0.Add(time.Duration(tag.Timestamp-m0) * time.Millisecond)
			res.playoutDelays = append(res.playoutDelays, show.Sub(now))
		}
	}
}

func isEnd(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readRTMP plays one RTMP stream with the gortmplib client until ctx ends.
func readRTMP(ctx context.Context, u *url.URL) result {
	var res result
	t0 := time.Now()
	c := &gortmplib.Client{URL: u, Publish: false}
	if err := c.Initialize(ctx); err != nil {
		res.err = err
		return res
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	res.connected = true
	// The messages as they arrive: the first keyframe is when its bytes
	// come, as for HTTP-FLV. (gortmplib's Reader would first read 2 s of
	// media timestamps to find the tracks, whatever the server sends.)
	for {
		msg, err := c.Read()
		if err != nil {
			res.bytes = int64(c.BytesReceived())
			if ctx.Err() == nil {
				res.err = err
			}
			return res
		}
		if v, ok := msg.(*message.Video); ok && res.firstKey == 0 && v.Type == message.VideoTypeAU && v.IsKeyFrame {
			res.firstKey = time.Since(t0)
		}
	}
}

// readRTSP plays one RTSP stream over TCP until ctx ends, decoding H264
// only up to the first keyframe.
func readRTSP(ctx context.Context, raw string) result {
	var res result
	t0 := time.Now()
	u, err := base.ParseURL(raw)
	if err != nil {
		res.err = err
		return res
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		res.err = err
		return res
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	desc, _, err := c.Describe(u)
	if err != nil {
		res.err = err
		return res
	}
	res.connected = true
	var h264f *format.H264
	medi := desc.FindFormat(&h264f)
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		res.err = err
		return res
	}
	if medi != nil {
		dec, _ := h264f.CreateDecoder()
		var got atomic.Bool
		c.OnPacketRTP(medi, h264f, func(pkt *rtp.Packet) {
			if got.Load() {
				return
			}
			if au, err := dec.Decode(pkt); err == nil && h264.IsRandomAccess(au) && got.CompareAndSwap(false, true) {
				res.firstKey = time.Since(t0)
			}
		})
	}
	if _, err := c.Play(nil); err != nil {
		res.err = err
		return res
	}
	err = c.Wait()
	if st := c.Stats(); st != nil {
		res.bytes = int64(st.Conn.InboundBytes)
	}
	if ctx.Err() == nil {
		res.err = err
	}
	return res
}

// readSRT plays one SRT stream (MPEG-TS, stream ID "read:PATH") until ctx
// ends. It finds the H.264 PID in the PMT, the first keyframe (an IDR NAL
// in that PID's payload), and counts continuity-counter gaps on every PID
// after its first packet: what a decoder would see as discontinuities.
func readSRT(ctx context.Context, u *url.URL) (res result) {
	t0 := time.Now()
	cfg := gosrt.DefaultConfig()
	cfg.StreamId = "read:" + strings.TrimPrefix(u.Path, "/")
	if s := u.Query().Get("streamid"); s != "" {
		cfg.StreamId = s
	}
	cfg.PayloadSize = 7 * 188
	c, err := gosrt.Dial("srt", u.Host, cfg)
	if err != nil {
		res.err = err
		return res
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer func() {
		var st gosrt.Statistics
		c.Stats(&st)
		res.srtDrops = st.Accumulated.PktRecvDrop
	}()
	res.connected = true
	var (
		buf            = make([]byte, 1500)
		pmtPID, vidPID = -1, -1
		lastCC         [8192]int8
		tail           [3]byte // the video payload's last bytes, for a start code across packets
	)
	for i := range lastCC {
		lastCC[i] = -1
	}
	for {
		n, err := c.Read(buf)
		if err != nil {
			if ctx.Err() == nil {
				res.err = err
			}
			return res
		}
		res.bytes += int64(n)
		for p := buf[:n]; len(p) >= 188; p = p[188:] {
			if p[0] != 0x47 {
				res.ccErrors++
				continue
			}
			pid := int(p[1]&0x1f)<<8 | int(p[2])
			afc := p[3] >> 4 & 3
			if afc&1 != 0 { // has payload: the counter advances
				cc := int8(p[3] & 0xf)
				if l := lastCC[pid]; l >= 0 && cc != (l+1)&0xf && cc != l {
					res.ccErrors++
				}
				lastCC[pid] = cc
			}
			if res.firstKey > 0 || afc&1 == 0 {
				continue
			}
			pl := p[4:]
			if afc == 3 {
				if int(pl[0])+1 > len(pl) {
					continue
				}
				pl = pl[1+int(pl[0]):]
			}
			pusi := p[1]&0x40 != 0
			switch {
			case pid == 0 && pusi && len(pl) > 13:
				pl = pl[1+int(pl[0]):] // pointer field
				pmtPID = int(pl[10]&0x1f)<<8 | int(pl[11])
			case pid == pmtPID && pusi && vidPID < 0 && len(pl) > 13:
				pl = pl[1+int(pl[0]):]
				end := min(3+int(pl[1]&0xf)<<8|int(pl[2]), len(pl)) - 4 // before the CRC
				for i := 12 + (int(pl[10]&0xf)<<8 | int(pl[11])); i+5 <= end; {
					if pl[i] == 0x1b { // H.264
						vidPID = int(pl[i+1]&0x1f)<<8 | int(pl[i+2])
						break
					}
					i += 5 + (int(pl[i+3]&0xf)<<8 | int(pl[i+4]))
				}
			case pid == vidPID:
				b := append(tail[:], pl...)
				for i := 0; i+3 < len(b); i++ {
					if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 && b[i+3]&0x1f == 5 {
						res.firstKey = time.Since(t0)
						break
					}
				}
				copy(tail[:], b[len(b)-3:])
			}
		}
	}
}

func summarize(u string, rs []result, d time.Duration) Summary {
	s := Summary{URL: u, Readers: len(rs)}
	var keys, kbps, delays, rates []float64
	for _, r := range rs {
		if r.connected {
			s.Connected++
		}
		if r.err != nil {
			s.Errors++
			if len(s.FirstErrors) < 5 {
				s.FirstErrors = append(s.FirstErrors, r.err.Error())
			}
		}
		if r.firstKey > 0 {
			ms := float64(r.firstKey) / float64(time.Millisecond)
			keys = append(keys, ms)
			if r.firstKey <= time.Second {
				s.KeyWithin1s++
			}
		}
		s.BytesTotal += r.bytes
		s.CCErrors += r.ccErrors
		s.SRTRecvDrops += r.srtDrops
		if r.connected {
			kbps = append(kbps, float64(r.bytes)*8/1000/d.Seconds())
		}
		if r.connected && strings.HasPrefix(u, "http") {
			// A reader that stalled, or never got a keyframe, counts at 0.
			rates = append(rates, r.mediaRate)
			if r.mediaRate < 0.99 {
				s.MediaRateBelow99++
			}
		}
		// Skip the first 3 s of each sampled reader: the delay a player
		// settles to is what matters.
		for i, pd := range r.playoutDelays {
			if i >= 90 {
				delays = append(delays, float64(pd)/float64(time.Millisecond))
			}
		}
	}
	s.FirstKeyMedian, s.FirstKeyP95, s.FirstKeyMax = stats.Pct(keys, 50), stats.Pct(keys, 95), stats.Pct(keys, 100)
	s.KbpsMedian, s.KbpsMin = stats.Pct(kbps, 50), stats.Pct(kbps, 0)
	s.MediaRateMedian, s.MediaRateMin = stats.Pct(rates, 50), stats.Pct(rates, 0)
	s.PlayoutDelayMed, s.PlayoutDelayP95 = stats.Pct(delays, 50), stats.Pct(delays, 95)
	return s
}

func printText(s Summary) {
	var b strings.Builder
	fmt.Fprintf(&b, "url                      %s\n", s.URL)
	fmt.Fprintf(&b, "readers connected        %d / %d (errors %d)\n", s.Connected, s.Readers, s.Errors)
	for _, e := range s.FirstErrors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	fmt.Fprintf(&b, "first keyframe           median %.1f ms, p95 %.1f ms, max %.1f ms\n", s.FirstKeyMedian, s.FirstKeyP95, s.FirstKeyMax)
	fmt.Fprintf(&b, "keyframe within 1 s      %d readers\n", s.KeyWithin1s)
	fmt.Fprintf(&b, "per-reader throughput    median %.0f kbit/s, min %.0f kbit/s\n", s.KbpsMedian, s.KbpsMin)
	if s.MediaRateMedian > 0 {
		fmt.Fprintf(&b, "media time per second    median %.3f, min %.3f, readers under 0.99: %d (each reader from 2 s after its first keyframe to its end)\n", s.MediaRateMedian, s.MediaRateMin, s.MediaRateBelow99)
	}
	fmt.Fprintf(&b, "bytes received           %d\n", s.BytesTotal)
	if strings.HasPrefix(s.URL, "srt:") {
		fmt.Fprintf(&b, "TS continuity gaps       %d (all readers, after each PID's first packet); SRT receiver drops %d\n", s.CCErrors, s.SRTRecvDrops)
	}
	if s.PlayoutDelayMed != 0 || s.PlayoutDelayP95 != 0 {
		fmt.Fprintf(&b, "playout delay (sampled)  median %.0f ms, p95 %.0f ms (how far behind arrival a real-time player runs)\n", s.PlayoutDelayMed, s.PlayoutDelayP95)
	}
	fmt.Print(b.String())
}
