package hls

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// On a path with a read key every URI of the playlist carries the path's
// share value: players resolve them without the query of the playlist
// they came from.
func TestPlaylistURIsCarryTheShare(t *testing.T) {
	p := &mediaPlaylist{prefix: "ab_", partTarget: 200 * time.Millisecond, targetDur: 1, query: "?share=1.ab",
		segs: []*segment{
			{msn: 4, init: 1, complete: true, dur: time.Second, parts: []*part{{index: 0, dur: time.Second, independent: true}}},
			{msn: 5, init: 1, parts: []*part{{index: 0, dur: 200 * time.Millisecond, independent: true}}},
		},
		reports: []renditionReport{{uri: "../480p/stream.m3u8", lastMSN: 5, lastPart: 0}},
	}
	uris := 0
	for _, line := range strings.Split(string(p.render(false)), "\n") {
		switch {
		case strings.Contains(line, `URI="`):
			uris++
			if !strings.Contains(line, `?share=1.ab"`) {
				t.Errorf("URI without the share: %s", line)
			}
		case line != "" && !strings.HasPrefix(line, "#"):
			uris++
			if !strings.HasSuffix(line, "?share=1.ab") {
				t.Errorf("segment URI without the share: %s", line)
			}
		}
	}
	if uris != 6 { // map, 2 parts, 1 segment, preload hint, rendition report
		t.Errorf("%d URIs checked, want 6", uris)
	}
	if renderMultivariant([]variant{{uri: "stream.m3u8?share=1.ab"}}) == nil {
		t.Fatal("no multivariant playlist")
	}
}

// A player that gives the read key once (on index.m3u8) can follow every
// URI from there, none of which carries the key; without the key it gets
// 401.
func TestReadKeyFollowsThePlaylists(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := server.NewHub(server.HubConfig{Logger: log, PathConfig: func(string) server.PathConfig {
		c := server.DefaultPathConfig()
		c.ReadKey = "r3ad"
		return c
	}})
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC, gop: 500 * time.Millisecond})
	pub, err := hub.PublishTrusted("live/k", src.tracks(), server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h := New(serverConfig(), hub, log)
	ts := httptest.NewServer(h)
	defer func() { pub.Close(); hub.Close(); h.Close(); ts.Close() }()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the stream at four times real time
		for start := time.Now(); ; {
			u := src.next()
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start.Add(u.DTS / 4))):
			}
			pub.Write(u)
		}
	}()
	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(ts.URL + "/live/k/index.m3u8"); code != http.StatusUnauthorized {
		t.Fatalf("index.m3u8 without the key: %d, want 401", code)
	}
	base, _ := url.Parse(ts.URL + "/live/k/index.m3u8?key=r3ad")
	code, body := get(base.String())
	if code != http.StatusOK {
		t.Fatalf("index.m3u8?key=: %d %s", code, body)
	}
	follow := func(from *url.URL, body string) []*url.URL {
		var out []*url.URL
		for _, line := range strings.Split(body, "\n") {
			ref := ""
			if i := strings.Index(line, `URI="`); i >= 0 {
				ref = line[i+5:]
				ref = ref[:strings.IndexByte(ref, '"')]
			} else if line != "" && !strings.HasPrefix(line, "#") {
				ref = line
			}
			if ref != "" {
				r, err := from.Parse(ref)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, r)
			}
		}
		return out
	}
	if strings.Contains(body, "r3ad") || !strings.Contains(body, "?share=") {
		t.Fatalf("index.m3u8 hands out the key or no share:\n%s", body)
	}
	variants := follow(base, body)
	if len(variants) != 1 {
		t.Fatalf("variants %v", variants)
	}
	code, body = get(variants[0].String())
	if code != http.StatusOK {
		t.Fatalf("%s: %d %s", variants[0], code, body)
	}
	if strings.Contains(body, "r3ad") {
		t.Fatalf("stream.m3u8 hands out the key:\n%s", body)
	}
	kinds := map[string]bool{}
	for _, u := range follow(variants[0], body) {
		kind := "seg"
		switch {
		case strings.Contains(u.Path, "_init"):
			kind = "init"
		case strings.Contains(u.Path, "_part"):
			kind = "part"
		}
		if kinds[kind] && kind == "part" {
			continue // one part is enough (the hinted one would block)
		}
		if c, b := get(u.String()); c != http.StatusOK {
			t.Errorf("%s: %d %s", u, c, b)
		}
		kinds[kind] = true
	}
	if !kinds["init"] || !kinds["seg"] || !kinds["part"] {
		t.Errorf("followed %v, want an init, a segment and a part", kinds)
	}
}
