//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// apiDo sends a JSON API request and decodes the answer into into.
func apiDo(t testing.TB, method, url, bearer, body string, into any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s: status %d, not JSON: %v: %s", method, url, resp.StatusCode, err, b)
		}
	}
	return resp.StatusCode
}

type apiCreated struct {
	ID, Key, Path string
	Publish       struct{ RTMPServer, RTMPKey, RTMPURL, SRT, RTSP string }
	Play          struct{ FLV, HLS, RTSP, RTMP, SRT, Watch string }
}

type apiStream struct {
	ID      string
	Live    bool
	Figures *struct {
		Publisher string
		BytesIn   uint64
		BitrateIn int
		Tracks    []struct {
			Codec  string
			Height int
		}
	}
}

// A streamer creates a stream, publishes from ffmpeg with the key as the
// stream name (RTMP) and as an SRT stream ID; the stream is live under its
// public id with figures; a wrong key is refused; keys survive a restart;
// deleting kicks the publisher; the key is never in the log.
func TestAPIStreamKeys(t *testing.T) {
	s := startServer(t, "")
	api := "http://" + s.httpAddr + "/api/v1"
	var c apiCreated
	if code := apiDo(t, "POST", api+"/streams", "", `{"name":"e2e show"}`, &c); code != 201 {
		t.Fatalf("create from loopback without a token: %d", code)
	}
	if !strings.HasSuffix(c.Publish.RTMPURL, "/live/"+c.Key) || !strings.Contains(c.Play.FLV, "/live/"+c.ID+".flv") {
		t.Fatalf("URLs: %+v", c)
	}

	// RTMP with the key as the stream name.
	pub := startPublisher(t, "rtmp://"+s.rtmpAddr+"/live/"+c.Key)
	waitLiveURL(t, s.flvURL(c.Path), c.Path, pub)
	var st apiStream
	deadline := time.Now().Add(10 * time.Second)
	for {
		apiDo(t, "GET", api+"/streams/"+c.ID, "", "", &st)
		if st.Live && st.Figures != nil && len(st.Figures.Tracks) == 2 && st.Figures.BytesIn > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream not live with figures in the API: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(st.Figures.Publisher, "rtmp ") || st.Figures.Tracks[0].Height != 240 {
		t.Errorf("figures %+v", st.Figures)
	}
	decode(t, s.flvURL(c.Path), 2).check(t, 30, 30)

	// A wrong key is refused; so is the right path without the key.
	for _, url := range []string{"rtmp://" + s.rtmpAddr + "/live/sk_00000000000000000000000000000000", "rtmp://" + s.rtmpAddr + "/" + c.Path} {
		_, errOut, code := run(t, 20*time.Second, "ffmpeg", publisherArgs(url, "-t", "2")...)
		if code == 0 {
			t.Errorf("publish to %s succeeded, want refused", url)
		}
		_ = errOut
	}

	// Delete (with the stream's key) kicks the publisher.
	var del map[string]any
	// Create another, restart the server: its key still publishes.
	var c2 apiCreated
	apiDo(t, "POST", api+"/streams", "", `{"name":"second"}`, &c2)
	if code := apiDo(t, "DELETE", api+"/streams/"+c.ID, c.Key, "", &del); code != 200 || del["kicked"] != true {
		t.Fatalf("delete: %d %v", code, del)
	}
	if _, ok := pub.wait(10 * time.Second); !ok {
		t.Fatal("the kicked ffmpeg publisher is still running")
	}
	s.stop(t)
	s = s.restart(t)
	api = "http://" + s.httpAddr + "/api/v1"
	srtPub := startSRTPublisher(t, s.srtURL("publish:live/"+c2.Key)+srtPkt)
	waitLiveURL(t, s.flvURL(c2.Path), c2.Path, srtPub)
	var list struct{ Streams []apiStream }
	apiDo(t, "GET", api+"/streams", "", "", &list)
	if len(list.Streams) != 1 || list.Streams[0].ID != c2.ID || !list.Streams[0].Live {
		t.Fatalf("after a restart: %+v", list)
	}
	srtPub.signal(syscall.SIGINT)
	srtPub.wait(5 * time.Second)
	for _, k := range []string{c.Key, c2.Key} {
		if strings.Contains(s.stderr.String(), k) || strings.Contains(s.stderr.String(), k[3:]) {
			t.Fatalf("a stream key is in the server log")
		}
	}
}

// With api.adminToken set, admin endpoints refuse without it, also from
// loopback, and a stream's endpoints need its key.
func TestAPIAdminToken(t *testing.T) {
	const token = "e2e-admin-token-0123456789"
	s := startServer(t, "api:\n  adminToken: "+token+"\n")
	api := "http://" + s.httpAddr + "/api/v1"
	var e map[string]any
	if code := apiDo(t, "POST", api+"/streams", "", `{"name":"x"}`, &e); code != 401 || e["error"] == nil {
		t.Fatalf("create without the token: %d %v", code, e)
	}
	if code := apiDo(t, "GET", api+"/paths", "wrong", "", &e); code != 401 {
		t.Fatalf("paths with a wrong token: %d", code)
	}
	var c apiCreated
	if code := apiDo(t, "POST", api+"/streams", token, `{"name":"x"}`, &c); code != 201 || c.Key == "" {
		t.Fatalf("create with the token: %d", code)
	}
	if code := apiDo(t, "GET", api+"/info", token, "", &e); code != 200 || e["version"] == nil {
		t.Fatalf("info: %d %v", code, e)
	}
	// A stream's own endpoints take its key (or the admin token).
	if code := apiDo(t, "DELETE", api+"/streams/"+c.ID, "sk_nope", "", &e); code != 401 {
		t.Fatalf("delete with a wrong key: %d", code)
	}
	if code := apiDo(t, "DELETE", api+"/streams/"+c.ID, c.Key, "", &e); code != 200 {
		t.Fatalf("delete with the stream's key: %d %v", code, e)
	}
}
