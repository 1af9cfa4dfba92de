//go:build e2e

package e2e

// Recording: ffmpeg publishes, the server records fMP4 segments, is killed
// with SIGKILL, the files play in ffprobe, a restart indexes them, and
// /api/v1/recordings/get makes one file across segment boundaries.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type recList struct {
	Spans []struct {
		Start    time.Time `json:"start"`
		End      time.Time `json:"end"`
		Duration float64   `json:"duration"`
		URL      string    `json:"url"`
	} `json:"spans"`
	Segments []struct {
		Start    time.Time `json:"start"`
		End      time.Time `json:"end"`
		Size     int64     `json:"size"`
		Complete bool      `json:"complete"`
	} `json:"segments"`
}

func TestRecordingKill9RecoveryAndGet(t *testing.T) {
	requireTool(t, "ffprobe")
	dir := t.TempDir()
	s := startServer(t, fmt.Sprintf(`paths:
  default:
    record: true
record:
  directory: %q
  segmentDuration: 2s
  fragmentDuration: 500ms
`, dir))
	pub := startPublisher(t, s.rtmpURL("live/rec"))
	waitLive(t, s, "live/rec", pub)
	time.Sleep(6500 * time.Millisecond)
	s.kill() // SIGKILL, mid-fragment
	s.stopped = true
	pub.kill()

	// Every file plays to its last complete fragment, the torn one too.
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".mp4") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 3 {
		t.Fatalf("%d segment files after 6.5 s of 2 s segments: %v", len(files), files)
	}
	// The one being written may hold only its header (the kill came right
	// after a cut): the restart deletes it.
	var empty []string
	for _, f := range files {
		out, errOut, code := run(t, 20*time.Second, "ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0",
			"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", f)
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		if code != 0 && n > 0 {
			t.Fatalf("ffprobe %s: status %d, %q packets, %s", f, code, out, errOut)
		}
		if n == 0 {
			empty = append(empty, f)
		}
	}
	if len(empty) > 1 {
		t.Fatalf("%d files without a complete fragment: %v", len(empty), empty)
	}

	// A restart indexes what the kill left.
	s = s.restart(t)
	base := "http://" + s.httpAddr
	var list recList
	getJSON(t, base+"/api/v1/recordings?path=live/rec", &list)
	if len(list.Segments) != len(files)-len(empty) {
		t.Fatalf("the index lists %d segments, %d files were on disk, %d of them empty", len(list.Segments), len(files), len(empty))
	}
	for _, f := range empty {
		if _, err := os.Stat(f); err == nil {
			t.Fatalf("the empty segment %s was left after recovery", f)
		}
	}
	for i, sg := range list.Segments {
		if !sg.Complete || sg.Size == 0 || !sg.End.After(sg.Start) {
			t.Fatalf("segment %d after recovery: %+v", i, sg)
		}
	}
	if len(list.Spans) != 1 {
		t.Fatalf("%d spans, want 1 (one publish): %+v", len(list.Spans), list.Spans)
	}

	// One MP4 of 3 s from the first segment's start: across a boundary.
	start := list.Segments[0].Start
	q := url.Values{"path": {"live/rec"}, "start": {start.Format(time.RFC3339Nano)}, "duration": {"3s"}, "format": {"mp4"}}
	resp, err := http.Get(base + "/api/v1/recordings/get?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("get: %s %s", resp.Status, body)
	}
	out := filepath.Join(t.TempDir(), "get.mp4")
	os.WriteFile(out, body, 0o600)
	stdout, errOut, code := run(t, 20*time.Second, "ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "packet=dts_time:format=duration", "-of", "csv=p=0", out)
	if code != 0 || errOut != "" {
		t.Fatalf("ffprobe of the /get file: status %d: %s", code, errOut)
	}
	var dts []float64
	var dur float64
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(line), ","), 64)
		if err != nil {
			continue
		}
		dts = append(dts, v)
	}
	if len(dts) < 2 {
		t.Fatalf("ffprobe output: %s", stdout)
	}
	dur, dts = dts[len(dts)-1], dts[:len(dts)-1] // format=duration comes last
	const frame = 1.0 / 30
	if math.Abs(dur-3) > frame+0.001 {
		t.Fatalf("the file lasts %.3f s, want 3 s ± a frame", dur)
	}
	for i := 1; i < len(dts); i++ {
		if d := dts[i] - dts[i-1]; math.Abs(d-frame) > 0.002 {
			t.Fatalf("video DTS jumps by %.4f s at packet %d (%.3f → %.3f): not continuous", d, i, dts[i-1], dts[i])
		}
	}
	if n := len(dts); n < 89 || n > 91 {
		t.Fatalf("%d video packets in 3 s at 30 fps", n)
	}

	// Every frame decodes: the payloads are the right bytes.
	if _, errOut, code := run(t, 60*time.Second, "ffmpeg", "-v", "error", "-xerror", "-i", out, "-f", "null", "-"); code != 0 || errOut != "" {
		t.Fatalf("decoding the /get file: status %d: %s", code, errOut)
	}

	// Range requests on the finished file.
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/recordings/get?"+q.Encode(), nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(part) != string(body[1000:2000]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", len(body)) {
		t.Fatalf("range: %s %q, %d bytes", resp.Status, resp.Header.Get("Content-Range"), len(part))
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", u, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, b)
	}
}

// rewindSample is one of rewind.mjs's samples.
type rewindSample struct {
	Started bool        `json:"started"`
	First   *rewindSnap `json:"first"`
	Last    *rewindSnap `json:"last"`
}

type rewindSnap struct {
	Frames    int     `json:"frames"`
	CT        float64 `json:"ct"`
	Behind    float64 `json:"behind"`
	Rewinding bool    `json:"rewinding"`
	Src       string  `json:"src"`
}

func (s rewindSample) advanced() bool {
	return s.Started && s.First != nil && s.Last != nil && s.Last.Frames > s.First.Frames && s.Last.CT > s.First.CT
}

// TestBrowserRewind: a viewer of the watch page rewinds the recorded live
// stream in hls.js (headless Chromium) and comes back to live.
func TestBrowserRewind(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	s := startServer(t, fmt.Sprintf(`paths:
  default:
    record: true
record:
  directory: %q
  segmentDuration: 4s
`, t.TempDir()))
	pub := startPublisher(t, s.rtmpURL("live/rec"))
	waitLive(t, s, "live/rec", pub)
	time.Sleep(20 * time.Second) // something to rewind into
	node := startProc(t, "node", filepath.Join(browserDir, "rewind.mjs"), "http://"+s.httpAddr, "--path", "live/rec", "--timeout", "100")
	code, ok := node.wait(120 * time.Second)
	if !ok {
		node.kill()
		t.Fatalf("rewind.mjs did not finish; stderr:\n%s", tail(node.stderr.String(), 20))
	}
	lines := strings.Split(strings.TrimSpace(node.stdout.String()), "\n")
	var res struct {
		OK      bool         `json:"ok"`
		Live    rewindSample `json:"live"`
		Rewound rewindSample `json:"rewound"`
		Back    rewindSample `json:"back"`
		Errors  []string     `json:"errors"`
		Console []string     `json:"console"`
		Events  []string     `json:"events"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || code != 0 || !res.OK {
		t.Fatalf("rewind.mjs: status %d, %v: %s\nstderr:\n%s", code, err, node.stdout.String(), tail(node.stderr.String(), 20))
	}
	t.Logf("live %+v\nrewound %+v %+v\nback %+v\nevents %v", res.Live.Last, res.Rewound.First, res.Rewound.Last, res.Back.Last, res.Events)
	if !res.Live.advanced() || !res.Rewound.advanced() || !res.Back.advanced() {
		t.Fatalf("playback did not advance: live %v, rewound %v, back to live %v; errors %v", res.Live.advanced(), res.Rewound.advanced(), res.Back.advanced(), res.Errors)
	}
	// Rewound: well behind the newest recorded media (the page jumps two
	// minutes back, to the start of the recording here).
	if b := res.Rewound.Last.Behind; b < 10 {
		t.Fatalf("rewound only %.1f s behind the newest recorded media", b)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("page errors: %v", res.Errors)
	}
}

// TestRecordingLadderRung: the rungs of a recorded path are recorded too,
// each as its own path, and play back.
func TestRecordingLadderRung(t *testing.T) {
	requireTool(t, "ffprobe")
	conf := ladderConfig("always") + fmt.Sprintf("    record: true\nrecord:\n  directory: %q\n  segmentDuration: 2s\n", t.TempDir())
	s := startServer(t, conf)
	pub := startLadderPublisher(t, s, "live/lad")
	waitLive(t, s, "live/lad", pub)
	base := "http://" + s.httpAddr
	var list recList
	deadline := time.Now().Add(40 * time.Second)
	for {
		list = recList{}
		getJSON(t, base+"/api/v1/recordings?path=live/lad/240p", &list)
		if len(list.Segments) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 240p rung has %d segments after 40 s", len(list.Segments))
		}
		time.Sleep(500 * time.Millisecond)
	}
	q := url.Values{"path": {"live/lad/240p"}, "start": {list.Segments[0].Start.Format(time.RFC3339Nano)}, "duration": {"2s"}}
	resp, err := http.Get(base + "/api/v1/recordings/get?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("get of the rung: %s %s", resp.Status, body)
	}
	out := filepath.Join(t.TempDir(), "rung.mp4")
	os.WriteFile(out, body, 0o600)
	stdout, errOut, code := run(t, 20*time.Second, "ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=height", "-of", "csv=p=0", out)
	if code != 0 || strings.TrimSpace(stdout) != "240" {
		t.Fatalf("the rung's recording: status %d, height %q, %s", code, stdout, errOut)
	}
}
