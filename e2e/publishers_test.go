//go:build e2e

package e2e

// Publishers: ffmpeg encoders pushing a test pattern, and waiting until a
// path is live.

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// publisherArgs is an ffmpeg publish of a 320x240 30 fps test picture with
// a sine tone, H264 (2 s GOP, fixed) and AAC, in real time. extra goes
// right before the output (output options such as -t or -output_ts_offset).
func publisherArgs(url string, extra ...string) []string {
	return append(encoderArgs(extra...), "-f", "flv", url)
}

// encoderArgs is publisherArgs up to the output format: the inputs, the
// encoders and extra.
func encoderArgs(extra ...string) []string {
	args := []string{"-hide_banner", "-nostdin", "-v", "error",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
		"-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-threads", "1",
		"-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "64k"}
	return append(args, extra...)
}

// startPublisher runs an ffmpeg publisher on the server's path.
func startPublisher(t testing.TB, url string, extra ...string) *proc {
	t.Helper()
	requireTool(t, "ffmpeg")
	return startProc(t, "ffmpeg", publisherArgs(url, extra...)...)
}

// waitLive waits until path is published (HEAD on its FLV URL gives 200).
// The publisher must keep running meanwhile.
func waitLive(t testing.TB, s *streamhub, path string, pub *proc) {
	t.Helper()
	waitLiveURL(t, s.flvURL(path), path, pub)
}

// waitLiveURL is waitLive for an FLV URL as given (e.g. with ?key=).
func waitLiveURL(t testing.TB, flvURL, path string, pub *proc) {
	t.Helper()
	if err := liveErr(flvURL, path, pub, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// liveErr is waitLiveURL returning why the stream is not live instead of
// failing the test.
func liveErr(flvURL, path string, pub *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Head(flvURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if pub != nil && pub.exited() {
			return fmt.Errorf("publisher on %s exited with status %d before the stream was live; stderr:\n%s",
				path, pub.cmd.ProcessState.ExitCode(), tail(pub.stderr.String(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not live after %s (last HEAD: %v)", path, timeout, errOrStatus(resp, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func errOrStatus(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}
