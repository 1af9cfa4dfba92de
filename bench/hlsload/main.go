// Command hlsload opens N low-latency HLS clients on one stream and reports
// what they received, how long the server held their blocking requests and
// how late each part reached them.
//
//	go run ./bench/hlsload -url http://127.0.0.1:8080/live/test/index.m3u8 -n 500 -t 20s
//
// Each client does what a low-latency player does at the live edge: it gets
// the multivariant playlist, the media playlist and the init section, gets
// the newest part, and then loops: a blocking playlist reload for the next
// part (stream.m3u8?_HLS_msn=M&_HLS_part=P, the preload hint of the last
// playlist, with _HLS_skip=YES for a delta update while the server offers
// CAN-SKIP-UNTIL, as hls.js does), then a GET of every part the reload lists
// that it has not fetched yet (normally just that one). With -preload it
// also requests the hinted part itself alongside the reload, as hls.js does
// (the server holds that request until the part exists). Each client has
// its own HTTP/1.1 keep-alive connection(s).
//
// A part's delivery lag is the time it was received minus the time it
// became available, estimated from the playlist: the segment's
// EXT-X-PROGRAM-DATE-TIME (the wall time its first frame reached the
// server) plus the durations of its parts up to and including this one.
// That holds for a source that runs in real time and a client on the same
// clock; it includes the server's cut (a part ends when the frame after it
// arrives), the wake-up of the blocking request and the transfer.
//
// It prints a text summary and, with -json FILE, the same figures as JSON.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bstats "github.com/streamhub/streamhub/bench/internal/stats"
	"github.com/streamhub/streamhub/internal/m3u8"
)

// partRef names a part: its media sequence number and index.
type partRef struct {
	msn uint64
	idx int
}

func (a partRef) less(b partRef) bool { return a.msn < b.msn || (a.msn == b.msn && a.idx < b.idx) }

// plPart is one EXT-X-PART of a media playlist.
type plPart struct {
	ref   partRef
	uri   string
	avail time.Time // PROGRAM-DATE-TIME of its segment + the parts up to its end; zero if unknown
}

// mediaPlaylist is what a client needs from a media playlist.
type mediaPlaylist struct {
	mapURI      string
	parts       []plPart // in order
	hint        partRef
	hintURI     string
	canSkip     bool
	canBlock    bool
	partTarget  float64
	lastMSN     uint64 // the media sequence number of the last segment listed (complete or growing)
	haveSegment bool
}

// parsePlaylist reads a media playlist (internal/m3u8); it checks that
// streamhub's part names agree with the playlist's numbering.
func parsePlaylist(b []byte) (*mediaPlaylist, error) {
	m, err := m3u8.ParseMedia(b)
	if err != nil {
		return nil, err
	}
	if m.Hint == nil {
		return nil, errors.New("no EXT-X-PRELOAD-HINT")
	}
	p := &mediaPlaylist{mapURI: m.Map, canSkip: m.CanSkip, canBlock: m.CanBlock, partTarget: m.PartTarget,
		hint: partRef{m.Hint.MSN, m.Hint.Index}, hintURI: m.Hint.URI}
	for _, mp := range m.Parts {
		if msn, i, ok := nameRef(mp.URI); ok && (msn != mp.MSN || i != mp.Index) {
			// streamhub names parts <prefix>part<MSN>.<INDEX>.mp4: a
			// mismatch means the playlist numbers its segments wrong.
			return nil, fmt.Errorf("part %s is numbered %d.%d by the playlist", mp.URI, mp.MSN, mp.Index)
		}
		p.parts = append(p.parts, plPart{ref: partRef{mp.MSN, mp.Index}, uri: mp.URI, avail: mp.Avail})
		p.lastMSN, p.haveSegment = mp.MSN, true
	}
	if n := len(m.Segments); n > 0 && (!p.haveSegment || m.Segments[n-1].MSN > p.lastMSN) {
		p.lastMSN, p.haveSegment = m.Segments[n-1].MSN, true
	}
	return p, nil
}

// nameRef reads MSN and index from a part name ending in partM.I.mp4.
func nameRef(uri string) (uint64, int, bool) {
	i := strings.LastIndex(uri, "part")
	if i < 0 || !strings.HasSuffix(uri, ".mp4") {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(strings.TrimSuffix(uri[i+4:], ".mp4"), ".")
	m, err1 := strconv.ParseUint(a, 10, 64)
	n, err2 := strconv.Atoi(b)
	return m, n, ok && err1 == nil && err2 == nil
}

// stats is one client's outcome.
type stats struct {
	started     bool          // got the playlist, init and a first part
	firstPart   time.Duration // from its start to its first part
	parts       int
	partBytes   int64
	otherBytes  int64 // playlists and init
	plBytes     int64 // blocking reloads
	playlists   int   // blocking reloads
	emptyReload int   // a reload that listed no new part (the server's block timeout)
	resyncs     int   // fell out of the listed parts and rejoined at the live edge
	errs        map[string]int
	lags        []float32 // part delivery lag, ms
	blocks      []float32 // blocking reload time, ms
	partGets    []float32 // part GET time, ms (the hinted one with -preload: from its request)
}

func (s *stats) fail(kind string) {
	if s.errs == nil {
		s.errs = map[string]int{}
	}
	s.errs[kind]++
}

type client struct {
	hc      *http.Client
	base    *url.URL
	preload bool
	skip    bool
	st      stats
	errMu   sync.Mutex // st.errs: the preload request runs beside the others
	buf     []byte     // playlist bodies, reused
}

func (c *client) fail(kind string) {
	c.errMu.Lock()
	c.st.fail(kind)
	c.errMu.Unlock()
}

// get fetches u and returns its length and, with keep, the body (in c.buf,
// valid until the next get with keep); parts are only counted. Errors are
// counted under what.
func (c *client) get(ctx context.Context, u *url.URL, what string, keep bool) (b []byte, n int64, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.fail(what + ": " + errKind(err))
		}
		return nil, 0, err
	}
	defer resp.Body.Close()
	if keep {
		bb := bytes.NewBuffer(c.buf[:0])
		n, err = bb.ReadFrom(resp.Body)
		c.buf = bb.Bytes()
		b = c.buf
	} else {
		n, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		if ctx.Err() == nil {
			c.fail(what + ": " + errKind(err))
		}
		return nil, n, err
	}
	if resp.StatusCode != http.StatusOK {
		c.fail(fmt.Sprintf("%s: HTTP %d", what, resp.StatusCode))
		return nil, n, fmt.Errorf("%s: HTTP %s: %s", what, resp.Status, bytes.TrimSpace(b))
	}
	return b, n, nil
}

func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + " " + oe.Err.Error()
	}
	return err.Error()
}

func ms(d time.Duration) float32 { return float32(d) / float32(time.Millisecond) }

// run plays until ctx ends.
func (c *client) run(ctx context.Context) {
	t0 := time.Now()
	b, _, err := c.get(ctx, c.base, "multivariant", true)
	if err != nil {
		return
	}
	c.st.otherBytes += int64(len(b))
	mediaURL := c.base
	for l := range strings.Lines(string(b)) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if mediaURL, err = c.base.Parse(l); err != nil {
				c.fail("multivariant: bad URI")
				return
			}
			break
		}
	}

	// Join at the live edge: the newest part; then follow the hints.
	var pl *mediaPlaylist
	var last partRef
	for ctx.Err() == nil {
		if pl, err = c.playlist(ctx, mediaURL, nil); err != nil {
			sleep(ctx, time.Second) // like a player retrying
			continue
		}
		if pl.mapURI == "" || len(pl.parts) == 0 {
			c.fail("playlist: no EXT-X-MAP or no part")
			sleep(ctx, time.Second)
			continue
		}
		iu, _ := mediaURL.Parse(pl.mapURI)
		_, n, err := c.get(ctx, iu, "init", false)
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		c.st.otherBytes += n
		p := pl.parts[len(pl.parts)-1]
		if !c.fetchPart(ctx, mediaURL, p, false) {
			sleep(ctx, time.Second)
			continue
		}
		last = p.ref
		c.st.started = true
		c.st.firstPart = time.Since(t0)
		break
	}

	for ctx.Err() == nil {
		want, wantURI := pl.hint, pl.hintURI
		type hinted struct {
			n   int64
			err error
			t0  time.Time
			end time.Time
		}
		var hintc chan hinted
		if c.preload {
			hintc = make(chan hinted, 1)
			hu, _ := mediaURL.Parse(wantURI)
			go func() {
				t := time.Now()
				_, n, err := c.get(ctx, hu, "preload part", false)
				hintc <- hinted{n, err, t, time.Now()}
			}()
		}
		next, err := c.playlist(ctx, mediaURL, &want)
		if err != nil {
			if hintc != nil {
				<-hintc
			}
			sleep(ctx, 200*time.Millisecond)
			// The part we waited for may belong to a session that ended
			// (the publisher came back): start again at the live edge of
			// the plain playlist, as a player does, instead of asking for
			// the same part in a loop.
			if p, err := c.playlist(ctx, mediaURL, nil); err == nil && len(p.parts) > 0 {
				pl, last = p, p.parts[len(p.parts)-1].ref
				c.st.resyncs++
			} else {
				sleep(ctx, 800*time.Millisecond) // the stream is gone: retry like a player
			}
			continue
		}
		pl = next
		if n := len(pl.parts); n > 0 && pl.parts[n-1].ref.less(last) {
			// The numbering went back (a server that restarted): rejoin.
			last = pl.parts[n-1].ref
			c.st.resyncs++
		}
		// The parts after the last one fetched.
		var fresh []plPart
		found := false
		for _, p := range pl.parts {
			if p.ref == last {
				found = true
			}
			if last.less(p.ref) {
				fresh = append(fresh, p)
			}
		}
		if !found && len(fresh) > 0 && !(fresh[0].ref.idx == 0 && fresh[0].ref.msn == last.msn+1) &&
			fresh[0].ref != (partRef{last.msn, last.idx + 1}) {
			// What came after our last part is no longer listed: rejoin
			// at the newest part, as a player that fell behind does.
			c.st.resyncs++
			fresh = fresh[len(fresh)-1:]
		}
		if len(fresh) == 0 {
			c.st.emptyReload++
		}
		var h *hinted
		if hintc != nil {
			r := <-hintc
			h = &r
		}
		for _, p := range fresh {
			if h != nil && p.ref == want && p.uri == wantURI {
				if h.err != nil {
					continue // counted; the next reload lists what follows
				}
				c.st.parts++
				c.st.partBytes += h.n
				c.st.partGets = append(c.st.partGets, ms(h.end.Sub(h.t0)))
				if !p.avail.IsZero() {
					c.st.lags = append(c.st.lags, ms(h.end.Sub(p.avail)))
				}
				last = p.ref
				continue
			}
			if !c.fetchPart(ctx, mediaURL, p, true) {
				break
			}
			last = p.ref
		}
	}
}

// playlist gets the media playlist, as a blocking reload for part want when
// it is set.
func (c *client) playlist(ctx context.Context, mediaURL *url.URL, want *partRef) (*mediaPlaylist, error) {
	u := *mediaURL
	what := "playlist"
	if want != nil {
		q := u.Query()
		q.Set("_HLS_msn", strconv.FormatUint(want.msn, 10))
		q.Set("_HLS_part", strconv.Itoa(want.idx))
		if c.skip {
			q.Set("_HLS_skip", "YES")
		}
		u.RawQuery = q.Encode()
		what = "blocking playlist"
	}
	t := time.Now()
	b, _, err := c.get(ctx, &u, what, true)
	if err != nil {
		return nil, err
	}
	if want != nil {
		c.st.playlists++
		c.st.blocks = append(c.st.blocks, ms(time.Since(t)))
		c.st.plBytes += int64(len(b))
	}
	c.st.otherBytes += int64(len(b))
	pl, err := parsePlaylist(b)
	if err != nil {
		c.fail(what + ": " + err.Error())
		return nil, err
	}
	if !pl.canBlock {
		c.fail(what + ": no CAN-BLOCK-RELOAD=YES")
	}
	return pl, nil
}

// fetchPart gets one part and records it; its delivery lag with lag (not
// for the part a client joins at, which was there before it asked).
func (c *client) fetchPart(ctx context.Context, mediaURL *url.URL, p plPart, lag bool) bool {
	t0 := time.Now()
	pu, err := mediaURL.Parse(p.uri)
	if err != nil {
		c.fail("part: bad URI")
		return false
	}
	_, n, err := c.get(ctx, pu, "part", false)
	if err != nil {
		return false
	}
	now := time.Now()
	c.st.parts++
	c.st.partBytes += n
	c.st.partGets = append(c.st.partGets, ms(now.Sub(t0)))
	if lag && !p.avail.IsZero() {
		c.st.lags = append(c.st.lags, ms(now.Sub(p.avail)))
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Summary is what hlsload reports.
type Summary struct {
	URL              string         `json:"url"`
	Clients          int            `json:"clients"`
	Started          int            `json:"started"`
	ToolCPUS         float64        `json:"load_tool_cpu_s"`
	Preload          bool           `json:"preload"`
	Skip             bool           `json:"delta_updates"`
	DurationS        float64        `json:"duration_s"`
	PerClientS       float64        `json:"per_client_s"`
	Errors           int            `json:"errors"`
	ErrorKinds       map[string]int `json:"error_kinds,omitempty"`
	Parts            int            `json:"parts"`
	PartsPerClientS  float64        `json:"parts_per_client_s"`
	Playlists        int            `json:"blocking_playlists"`
	EmptyReloads     int            `json:"empty_reloads"`
	Resyncs          int            `json:"resyncs"`
	BytesParts       int64          `json:"bytes_parts"`
	BytesOther       int64          `json:"bytes_playlists_init"`
	KbpsMedian       float64        `json:"per_client_kbps_median"`
	KbpsMin          float64        `json:"per_client_kbps_min"`
	FirstPartMedian  float64        `json:"first_part_ms_median"`
	FirstPartP95     float64        `json:"first_part_ms_p95"`
	LagMedian        float64        `json:"part_lag_ms_median"`
	LagP95           float64        `json:"part_lag_ms_p95"`
	LagP99           float64        `json:"part_lag_ms_p99"`
	LagMax           float64        `json:"part_lag_ms_max"`
	LagSamples       int            `json:"part_lag_samples"`
	BlockMedian      float64        `json:"blocking_reload_ms_median"`
	BlockP95         float64        `json:"blocking_reload_ms_p95"`
	PartGetMedian    float64        `json:"part_get_ms_median"`
	PartGetP95       float64        `json:"part_get_ms_p95"`
	PartGetP99       float64        `json:"part_get_ms_p99"`
	PlaylistBytesAvg float64        `json:"playlist_bytes_avg"`
}

func main() {
	u := flag.String("url", "", "multivariant playlist: http://HOST:PORT/PATH/index.m3u8")
	n := flag.Int("n", 100, "number of clients")
	d := flag.Duration("t", 20*time.Second, "how long each client plays")
	ramp := flag.Duration("ramp", 2*time.Second, "spread the starts over this long")
	preload := flag.Bool("preload", false, "also request the preload-hinted part alongside each blocking reload (as hls.js does)")
	skip := flag.Bool("skip", true, "ask for delta updates (_HLS_skip=YES) as hls.js does")
	jsonOut := flag.String("json", "", "also write the summary as JSON to this file")
	flag.Parse()
	base, err := url.Parse(*u)
	if *u == "" || err != nil || base.Scheme != "http" || *n < 1 {
		fmt.Fprintln(os.Stderr, "hlsload: -url http://HOST:PORT/PATH/index.m3u8 is required and -n must be at least 1")
		flag.Usage()
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *d+*ramp+15*time.Second)
	defer cancel()
	clients := make([]*client, *n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *n {
		c := &client{base: base, preload: *preload, skip: *skip,
			buf: make([]byte, 0, 8<<10), hc: &http.Client{Transport: &http.Transport{
				MaxIdleConnsPerHost: 4, DisableCompression: true,
				DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			}}}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			if *n > 1 {
				time.Sleep(*ramp * time.Duration(i) / time.Duration(*n))
			}
			cctx, ccancel := context.WithTimeout(ctx, *d)
			defer ccancel()
			c.run(cctx)
			c.hc.CloseIdleConnections()
		}()
	}
	wg.Wait()
	s := summarize(*u, clients, *d)
	s.DurationS = time.Since(start).Seconds()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.ToolCPUS = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	s.Preload, s.Skip = *preload, *skip
	printText(s)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "hlsload:", err)
			os.Exit(1)
		}
	}
}

func summarize(u string, cs []*client, d time.Duration) Summary {
	s := Summary{URL: u, Clients: len(cs), PerClientS: d.Seconds(), ErrorKinds: map[string]int{}}
	var lags, blocks, gets, firsts, kbps []float64
	var plBytes int64
	for _, c := range cs {
		st := &c.st
		if st.started {
			s.Started++
			firsts = append(firsts, float64(st.firstPart)/float64(time.Millisecond))
			kbps = append(kbps, float64(st.partBytes)*8/1000/d.Seconds())
		}
		for k, v := range st.errs {
			s.ErrorKinds[k] += v
			s.Errors += v
		}
		s.Parts += st.parts
		s.Playlists += st.playlists
		s.EmptyReloads += st.emptyReload
		s.Resyncs += st.resyncs
		s.BytesParts += st.partBytes
		s.BytesOther += st.otherBytes
		plBytes += st.plBytes
		for _, v := range st.lags {
			lags = append(lags, float64(v))
		}
		for _, v := range st.blocks {
			blocks = append(blocks, float64(v))
		}
		for _, v := range st.partGets {
			gets = append(gets, float64(v))
		}
	}
	if s.Started > 0 {
		s.PartsPerClientS = float64(s.Parts) / float64(s.Started) / d.Seconds()
	}
	if s.Playlists > 0 {
		s.PlaylistBytesAvg = float64(plBytes) / float64(s.Playlists)
	}
	s.LagSamples = len(lags)
	s.LagMedian, s.LagP95, s.LagP99, s.LagMax = bstats.Pct(lags, 50), bstats.Pct(lags, 95), bstats.Pct(lags, 99), bstats.Pct(lags, 100)
	s.BlockMedian, s.BlockP95 = bstats.Pct(blocks, 50), bstats.Pct(blocks, 95)
	s.PartGetMedian, s.PartGetP95, s.PartGetP99 = bstats.Pct(gets, 50), bstats.Pct(gets, 95), bstats.Pct(gets, 99)
	s.FirstPartMedian, s.FirstPartP95 = bstats.Pct(firsts, 50), bstats.Pct(firsts, 95)
	s.KbpsMedian, s.KbpsMin = bstats.Pct(kbps, 50), bstats.Pct(kbps, 0)
	return s
}

func printText(s Summary) {
	var b strings.Builder
	fmt.Fprintf(&b, "url                      %s\n", s.URL)
	fmt.Fprintf(&b, "clients started          %d / %d (preload hint requests %v, delta updates %v)\n", s.Started, s.Clients, s.Preload, s.Skip)
	fmt.Fprintf(&b, "errors                   %d\n", s.Errors)
	for _, k := range slices.Sorted(maps.Keys(s.ErrorKinds)) {
		fmt.Fprintf(&b, "  %6d  %s\n", s.ErrorKinds[k], k)
	}
	fmt.Fprintf(&b, "first part               median %.1f ms, p95 %.1f ms (multivariant + playlist + init + newest part)\n", s.FirstPartMedian, s.FirstPartP95)
	fmt.Fprintf(&b, "parts                    %d (%.2f per client-second), %d blocking reloads, %d empty reloads, %d resyncs\n",
		s.Parts, s.PartsPerClientS, s.Playlists, s.EmptyReloads, s.Resyncs)
	fmt.Fprintf(&b, "part delivery lag        median %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms (%d parts; availability from PROGRAM-DATE-TIME to received)\n",
		s.LagMedian, s.LagP95, s.LagP99, s.LagMax, s.LagSamples)
	fmt.Fprintf(&b, "blocking reload          median %.1f ms, p95 %.1f ms (request to playlist)\n", s.BlockMedian, s.BlockP95)
	fmt.Fprintf(&b, "part GET                 median %.1f ms, p95 %.1f ms, p99 %.1f ms\n", s.PartGetMedian, s.PartGetP95, s.PartGetP99)
	fmt.Fprintf(&b, "per-client throughput    median %.0f kbit/s, min %.0f kbit/s (parts)\n", s.KbpsMedian, s.KbpsMin)
	fmt.Fprintf(&b, "load tool CPU            %.2f s (on the same machine as the server)\n", s.ToolCPUS)
	fmt.Fprintf(&b, "bytes received           %d parts + %d playlists and init (%.0f B per blocking reload)\n", s.BytesParts, s.BytesOther, s.PlaylistBytesAvg)
	fmt.Print(b.String())
}
