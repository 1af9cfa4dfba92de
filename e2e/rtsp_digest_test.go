//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestRTSPDigestHashedKeys: a registered stream's key works as the RTSP
// Digest password with the stream id as user name, though the server keeps
// only hashes of it (ffmpeg publishes rtsp://ID:KEY@host/live/ID); a path
// with a read key from the config is played by GStreamer's rtspsrc with
// user-id/user-pw (Digest); a wrong password is refused with 401 and spends
// the address's failure budget (then even the right one is refused).
func TestRTSPDigestHashedKeys(t *testing.T) {
	t.Parallel()
	requireGStreamer(t)
	requireTool(t, "ffmpeg")
	s := startServer(t, "auth:\n  failureBudget: 5\n"+
		"paths:\n  overrides:\n    - match: \"private/*\"\n      readKey: \"READKEY\"\n")
	api := "http://" + s.httpAddr + "/api/v1"
	var c apiCreated
	if code := apiDo(t, "POST", api+"/streams", "", `{"name":"digest show"}`, &c); code != 201 {
		t.Fatalf("create a stream: %d", code)
	}
	cred := func(user, pass, path string) string {
		return "rtsp://" + user + ":" + pass + "@" + s.rtspAddr + "/" + path
	}

	// The stream key as the Digest password of the stream id (ffmpeg
	// answers the challenge with Digest: it is the only one offered).
	pub := startRTSPPublisher(t, cred(c.ID, c.Key, c.Path), "tcp")
	waitLive(t, s, c.Path, pub)
	wrong := startRTSPPublisher(t, cred(c.ID, "sk_00000000000000000000000000000000", c.Path), "tcp", "-t", "6")
	waitRefused(t, "publisher with a wrong key", wrong, "401")

	// A config read key, given to rtspsrc as user-id/user-pw.
	cam := startRTSPPublisher(t, s.rtspURL("private/cam"), "tcp")
	waitLiveURL(t, s.flvURL("private/cam")+"?key=READKEY", "private/cam", cam)
	gst := func(pw string) (int, string) {
		p := startProc(t, "gst-launch-1.0", "rtspsrc", "location="+s.rtspURL("private/cam"), "user-id=viewer", "user-pw="+pw,
			"protocols=tcp", "latency=200", "!", "rtph264depay", "!", "h264parse", "!", "avdec_h264", "!",
			"fakesink", "sync=false", "num-buffers=30")
		code, ok := p.wait(20 * time.Second)
		if !ok {
			p.kill()
		}
		return code, p.stdout.String() + p.stderr.String()
	}
	if code, out := gst("READKEY"); code != 0 {
		t.Errorf("rtspsrc with user-id/user-pw: exit %d\n%s", code, tail(out, 15))
	}
	if code, out := gst("guess"); code == 0 || !strings.Contains(strings.ToLower(out), "unauthorized") {
		t.Errorf("rtspsrc with a wrong user-pw: exit %d, want refused (Unauthorized)\n%s", code, tail(out, 15))
	}
	if n := s.countLog("wrong RTSP password"); n == 0 {
		t.Error("no wrong-password line in the log")
	}
	if strings.Contains(s.stderr.String(), c.Key) {
		t.Error("the stream key is in the log")
	}
	// Spend the rest of the budget (5): then the right password is refused.
	for range 4 {
		p := startProc(t, "ffprobe", "-v", "error", "-rtsp_transport", "tcp", cred("u", "guess", "private/cam"))
		p.wait(20 * time.Second)
	}
	waitRefused(t, "reader with the right password past the budget",
		startProc(t, "ffprobe", "-v", "error", "-rtsp_transport", "tcp", cred("u", "READKEY", "private/cam")), "")
	if pub.exited() {
		t.Errorf("the Digest publisher exited: %s", tail(pub.stderr.String(), 10))
	}
}
