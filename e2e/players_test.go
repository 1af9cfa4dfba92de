//go:build e2e

package e2e

// Players: ffmpeg decoding a URL and counting frames, FLV and RTMP readers
// that time the first picture, raw HTTP.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamhub/streamhub/protocols/httpflv"
)

// decoded is what an ffmpeg reader decoded.
type decoded struct {
	url          string
	video, audio int    // decoded frames per kind
	code         int    // exit status
	stderr       string // with -v error: empty unless something went wrong
}

// decode reads url with ffmpeg for seconds of media, decoding every frame
// (-f framemd5), with errors fatal (-xerror) and logged (-v error). It may
// run on any goroutine; problems show in the result, for check.
func decode(t testing.TB, url string, seconds int) decoded {
	return decodeWith(t, url, seconds, nil, nil)
}

// decodeWith is decode with input options (before -i, e.g. -rtsp_transport)
// and output options (before -t, e.g. filters).
func decodeWith(t testing.TB, url string, seconds int, inOpts, outOpts []string) decoded {
	d := decoded{url: url, code: -1}
	if len(inOpts) > 0 {
		d.url += " (" + strings.Join(inOpts, " ") + ")"
	}
	args := append([]string{"-hide_banner", "-nostdin", "-v", "error", "-xerror"}, inOpts...)
	args = append(append(args, "-i", url), outOpts...)
	args = append(args, "-t", strconv.Itoa(seconds), "-f", "framemd5", "-")
	p, err := tryStartProc(t, "ffmpeg", args...)
	if err != nil {
		d.stderr = err.Error() + " (install ffmpeg with scripts/test.sh)"
		return d
	}
	timeout := time.Duration(seconds)*time.Second + 30*time.Second
	code, ok := p.wait(timeout)
	if !ok {
		p.kill()
		d.stderr = fmt.Sprintf("killed: did not finish within %s\n%s", timeout, p.stderr.String())
		return d
	}
	d.code, d.stderr = code, strings.TrimSpace(p.stderr.String())
	d.video, d.audio = countFramemd5(p.stdout.String())
	return d
}

// countFramemd5 counts the video and audio frames in ffmpeg's -f framemd5
// output.
func countFramemd5(out string) (video, audio int) {
	kinds := map[string]string{} // stream index → video/audio
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "#media_type "); ok {
			if idx, kind, ok := strings.Cut(rest, ": "); ok {
				kinds[idx] = strings.TrimSpace(kind)
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		idx, _, _ := strings.Cut(line, ",")
		switch kinds[strings.TrimSpace(idx)] {
		case "video":
			video++
		case "audio":
			audio++
		}
	}
	return video, audio
}

// check asserts a clean decode of at least minVideo video and minAudio
// audio frames.
func (d decoded) check(t testing.TB, minVideo, minAudio int) {
	t.Helper()
	if d.code != 0 || d.stderr != "" {
		t.Errorf("ffmpeg reading %s: exit status %d, stderr:\n%s", d.url, d.code, tail(d.stderr, 20))
	}
	if d.video < minVideo {
		t.Errorf("ffmpeg reading %s decoded %d video frames, want >= %d", d.url, d.video, minVideo)
	}
	if d.audio < minAudio {
		t.Errorf("ffmpeg reading %s decoded %d audio frames, want >= %d", d.url, d.audio, minAudio)
	}
}

// flvTag is a tag as seen by flvReader, with its arrival time.
type flvTag struct {
	typ      byte
	ts       uint32
	key, cfg bool
	at       time.Time
}

// flvReader reads an HTTP-FLV stream in the background with the project's
// FLV parser and records every tag.
type flvReader struct {
	resp *http.Response
	mu   sync.Mutex
	tags []flvTag
	err  error // why reading stopped
	done chan struct{}
}

// openFLV sends a GET for url and starts reading tags; Cleanup closes it.
func openFLV(t testing.TB, url string) *flvReader {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	r := &flvReader{resp: resp, done: make(chan struct{})}
	t.Cleanup(r.close)
	go r.loop()
	return r
}

func (r *flvReader) loop() {
	defer close(r.done)
	fr, err := newFLVReader(r.resp.Body)
	if err != nil {
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		return
	}
	for {
		tag, err := fr.Read()
		r.mu.Lock()
		if err != nil {
			r.err = err
			r.mu.Unlock()
			return
		}
		r.tags = append(r.tags, flvTag{typ: tag.Type, ts: tag.Timestamp, key: tag.IsVideoKeyFrame(), cfg: tag.IsConfig(), at: time.Now()})
		r.mu.Unlock()
	}
}

func (r *flvReader) close() {
	r.resp.Body.Close()
	<-r.done
}

// snapshot returns the tags so far and the read error, if reading stopped.
func (r *flvReader) snapshot() ([]flvTag, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]flvTag(nil), r.tags...), r.err
}

// waitTags waits until cond holds for the tags read so far; it fails the
// test if reading stops or timeout passes first.
func (r *flvReader) waitTags(t testing.TB, timeout time.Duration, what string, cond func([]flvTag) bool) []flvTag {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tags, err := r.snapshot()
		if cond(tags) {
			return tags
		}
		if err != nil {
			t.Fatalf("HTTP-FLV reader stopped before %s: %v (after %d tags)", what, err, len(tags))
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTP-FLV reader: no %s within %s (%d tags read)", what, timeout, len(tags))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countVideo counts video tags with picture data (not sequence headers).
func countVideo(tags []flvTag) int {
	n := 0
	for _, tg := range tags {
		if tg.typ == tagVideo && !tg.cfg {
			n++
		}
	}
	return n
}

// firstFLVFrame opens url from Go, reads the FLV with the project's parser
// up to the first video tag that is not a sequence header, and returns that
// tag, whether a video sequence header came before it, and the wall time
// from sending the request to having the whole tag.
func firstFLVFrame(t testing.TB, url string) (flvTagData, bool, time.Duration) {
	t.Helper()
	start := time.Now()
	fr, done := getFLV(t, url, 10*time.Second)
	defer done()
	sawConfig := false
	for {
		tag, err := fr.Read()
		if err != nil {
			t.Fatalf("GET %s: reading tags: %v", url, err)
		}
		if tag.Type != tagVideo {
			continue
		}
		if tag.IsConfig() {
			sawConfig = true
			continue
		}
		took := time.Since(start)
		tag.Body = append([]byte(nil), tag.Body...)
		return tag, sawConfig, took
	}
}

// timedConn records when the first H264 picture message (not a sequence
// header) arrives, before gortmplib.Reader buffers it for track analysis.
type timedConn struct {
	gortmplib.Conn
	firstAU time.Time
}

func (c *timedConn) Read() (message.Message, error) {
	msg, err := c.Conn.Read()
	if v, ok := msg.(*message.Video); ok && err == nil && c.firstAU.IsZero() && v.Type == message.VideoTypeAU {
		c.firstAU = time.Now()
	}
	return msg, err
}

// firstRTMPFrame plays url with the gortmplib client and returns whether
// the first H264 access unit with picture data is a random access point (has
// an IDR NALU), and the wall time from starting the connection to that
// access unit's arrival.
func firstRTMPFrame(t testing.TB, rawURL string) (bool, time.Duration) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c := &gortmplib.Client{URL: u, Publish: false}
	if err := c.Initialize(ctx); err != nil {
		t.Fatalf("RTMP play %s: %v", rawURL, err)
	}
	defer c.Close()
	c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	tc := &timedConn{Conn: c}
	r := &gortmplib.Reader{Conn: tc}
	if err := r.Initialize(); err != nil {
		t.Fatalf("RTMP play %s: reading tracks: %v", rawURL, err)
	}
	var vt *gortmplib.Track
	for _, tr := range r.Tracks() {
		if _, ok := tr.Codec.(*codecs.H264); ok {
			vt = tr
		}
	}
	if vt == nil {
		t.Fatalf("RTMP play %s: no H264 track in %v", rawURL, r.Tracks())
	}
	got, random := false, false
	r.OnDataH264(vt, func(_, _ time.Duration, au [][]byte) {
		if got || !hasPicture(au) {
			return // the sequence header comes as an AU of SPS and PPS
		}
		got, random = true, h264.IsRandomAccess(au)
	})
	for !got {
		if err := r.Read(); err != nil {
			t.Fatalf("RTMP play %s: %v", rawURL, err)
		}
	}
	if tc.firstAU.IsZero() {
		t.Fatalf("RTMP play %s: got an access unit but saw no video message", rawURL)
	}
	return random, tc.firstAU.Sub(start)
}

// hasPicture reports whether an H264 access unit has a coded slice.
func hasPicture(au [][]byte) bool {
	for _, n := range au {
		if len(n) > 0 {
			if typ := h264.NALUType(n[0] & 0x1F); typ >= h264.NALUTypeNonIDR && typ <= h264.NALUTypeIDR {
				return true
			}
		}
	}
	return false
}

// rawHTTP sends one request line to addr as-is (no client-side cleaning of
// the path) and returns the response with its body read.
func rawHTTP(t testing.TB, addr, method, target string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, target, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp, string(body)
}

// The FLV reader is the project's own (fuzzed) parser, exported for
// clients by protocols/httpflv.

// FLV tag types.
const (
	tagAudio  = httpflv.TagAudio
	tagVideo  = httpflv.TagVideo
	tagScript = httpflv.TagScript
)

// flvTagData is one FLV tag.
type flvTagData = httpflv.Tag

func newFLVReader(r io.Reader) (*httpflv.Reader, error) { return httpflv.NewReader(r) }

// ffprobeStreams runs ffprobe with args (the input last) and returns the
// streams it reports, by codec type; what names the input in failures.
// With strict, anything ffprobe writes to stderr is a failure too.
func ffprobeStreams(t testing.TB, what string, strict bool, args ...string) map[string]probedStream {
	t.Helper()
	args = append([]string{"-hide_banner", "-v", "error", "-of", "json"}, args...)
	out, errOut, code := run(t, 30*time.Second, "ffprobe", args...)
	if code != 0 || (strict && strings.TrimSpace(errOut) != "") {
		t.Fatalf("ffprobe of %s: exit status %d, stderr:\n%s", what, code, tail(errOut, 20))
	}
	var res struct {
		Streams []probedStream `json:"streams"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ffprobe of %s: %v\n%s", what, err, out)
	}
	streams := map[string]probedStream{}
	for _, st := range res.Streams {
		streams[st.CodecType] = st
	}
	return streams
}

// getFLV GETs an HTTP-FLV URL, bounded by timeout, and returns the stream's
// tag reader; done ends the request.
func getFLV(t testing.TB, url string, timeout time.Duration) (*httpflv.Reader, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	done := func() {
		resp.Body.Close()
		cancel()
	}
	if resp.StatusCode != http.StatusOK {
		done()
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	fr, err := newFLVReader(resp.Body)
	if err != nil {
		done()
		t.Fatalf("GET %s: %v", url, err)
	}
	return fr, done
}
