//go:build e2e && unix

package e2e

// WHIP end to end with a non-browser client: a pion publisher sends H.264
// and Opus (made by ffmpeg) to the streamhub binary over WHIP, and ffmpeg
// players get AAC audio over HTTP-FLV and LL-HLS: the Opus→AAC job fills
// the stream's AAC track.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pwebrtc "github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// whipFiles makes 320x240 H.264 (Annex B, 30 fps, 1 s GOP, no B-frames) and
// Ogg Opus (20 ms frames) of seconds each.
func whipFiles(t *testing.T, seconds string) (h264, ogg string) {
	dir := t.TempDir()
	h264, ogg = filepath.Join(dir, "v.h264"), filepath.Join(dir, "a.ogg")
	if _, stderr, code := run(t, time.Minute, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", seconds,
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency", "-threads", "1", "-g", "30", "-bf", "0",
		"-pix_fmt", "yuv420p", "-f", "h264", h264); code != 0 {
		t.Fatalf("ffmpeg making %s: %s", h264, stderr)
	}
	if _, stderr, code := run(t, time.Minute, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", seconds,
		"-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", "-page_duration", "20000", "-f", "ogg", ogg); code != 0 {
		t.Fatalf("ffmpeg making %s: %s", ogg, stderr)
	}
	return h264, ogg
}

// whipPublish publishes the files in real time over WHIP until ctx ends or
// they run out; it returns when the session is up, and the error channel
// reports how sending ended.
func whipPublish(ctx context.Context, t *testing.T, url, h264, ogg string) <-chan error {
	t.Helper()
	pc, err := pwebrtc.NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	vt, err := pwebrtc.NewTrackLocalStaticSample(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeH264,
		ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "video", "whip")
	if err != nil {
		t.Fatal(err)
	}
	at, err := pwebrtc.NewTrackLocalStaticSample(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2}, "audio", "whip")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []pwebrtc.TrackLocal{vt, at} {
		if _, err := pc.AddTransceiverFromTrack(tr, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(s pwebrtc.PeerConnectionState) {
		if s == pwebrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	resp, err := http.Post(url, "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP POST %s: %s: %s", url, resp.Status, answer)
	}
	if err := pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("WHIP session not connected within 10 s")
	}
	done := make(chan error, 2)
	go func() { done <- sendH264(ctx, vt, h264) }()
	go func() { done <- sendOgg(ctx, at, ogg) }()
	return done
}

func sendH264(ctx context.Context, tr *pwebrtc.TrackLocalStaticSample, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := h264reader.NewReader(f)
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	var au []byte
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		au = append(au, 0, 0, 0, 1)
		au = append(au, nal.Data...)
		// A picture ends with its slice: send the access unit then.
		if nal.UnitType != h264reader.NalUnitTypeCodedSliceIdr && nal.UnitType != h264reader.NalUnitTypeCodedSliceNonIdr {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := tr.WriteSample(media.Sample{Data: au, Duration: time.Second / 30}); err != nil {
			return err
		}
		au = nil
	}
}

func sendOgg(ctx context.Context, tr *pwebrtc.TrackLocalStaticSample, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return err
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		page, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if len(page) == 0 || strings.HasPrefix(string(page), "OpusHead") || strings.HasPrefix(string(page), "OpusTags") {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := tr.WriteSample(media.Sample{Data: page, Duration: 20 * time.Millisecond}); err != nil {
			return err
		}
	}
}

// A WHIP publisher's Opus reaches HTTP-FLV and LL-HLS players as AAC.
func TestWHIPOpusPlayedAsAAC(t *testing.T) {
	requireTool(t, "ffmpeg")
	requireTool(t, "ffprobe")
	h264, ogg := whipFiles(t, "20")
	s := startServer(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := whipPublish(ctx, t, "http://"+s.httpAddr+"/live/whip/whip", h264, ogg)
	time.Sleep(2 * time.Second) // the AAC job's FFmpeg starts; a GOP is cached

	out, stderr, code := run(t, 30*time.Second, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels",
		"-of", "csv=p=0", s.flvURL("live/whip"))
	if code != 0 {
		t.Fatalf("ffprobe %s: exit status %d: %s", s.flvURL("live/whip"), code, stderr)
	}
	if !strings.Contains(out, "h264") || !strings.Contains(out, "aac,48000,2") {
		t.Errorf("HTTP-FLV streams %q, want h264 and aac,48000,2", out)
	}
	decode(t, s.flvURL("live/whip"), 3).check(t, 60, 100) // 3 s: 90 pictures, ~140 AAC frames
	hls := "http://" + s.httpAddr + "/live/whip/index.m3u8"
	out, stderr, code = run(t, 30*time.Second, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", hls)
	if code != 0 {
		t.Fatalf("ffprobe %s: exit status %d: %s", hls, code, stderr)
	}
	if !strings.Contains(out, "h264") || !strings.Contains(out, "aac") {
		t.Errorf("LL-HLS streams %q, want h264 and aac", out)
	}
	decode(t, hls, 3).check(t, 60, 100)
	// The session and its figures in the API and the metrics.
	body := httpGetBody(t, "http://"+s.httpAddr+"/api/v1/sessions")
	if !strings.Contains(body, `"protocol": "webrtc"`) || !strings.Contains(body, `"path": "live/whip"`) {
		t.Errorf("/api/v1/sessions has no WHIP publisher of live/whip:\n%s", body)
	}
	if !strings.Contains(body, `"rttMs"`) {
		t.Errorf("/api/v1/sessions has no link figures for the WHIP publisher:\n%s", body)
	}
	metrics := httpGetBody(t, "http://"+s.httpAddr+"/metrics")
	if !strings.Contains(metrics, `streamhub_stream_publisher_up{path="live/whip",protocol="webrtc"} 1`) {
		t.Errorf("/metrics has no WHIP publisher of live/whip")
	}
	select {
	case err := <-done:
		t.Fatalf("the WHIP publisher stopped early: %v", err)
	default:
	}
}
