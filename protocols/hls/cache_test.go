package hls

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// TestCacheSemantics asserts the Cache-Control of every kind of response
// (the table in docs/caching.md) and that each is counted by its kind.
func TestCacheSemantics(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 4500*time.Millisecond)
	l.publishSync(2 * time.Second)
	pl, _ := l.playlist("")
	c := pl.complete()
	seg := c[len(c)-1]
	msn, idx := hintOf(t, pl)
	before, _ := l.h.Responses()
	for _, tc := range []struct {
		name, cc, kind string
		code           int
	}{
		{"index.m3u8", ccShort, KindMultivariant, 200},
		{"stream.m3u8", ccPlain, KindPlaylist, 200},
		{fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=0", seg.msn), "public, max-age=1", KindBlocking, 200},
		{fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=0&_HLS_skip=YES", seg.msn), "public, max-age=1", KindBlocking, 200},
		{fmt.Sprintf("stream.m3u8?_HLS_msn=%d", seg.msn), "public, max-age=1", KindBlocking, 200},
		{seg.mapURI, ccFile, KindInit, 200},
		{seg.uri, ccFile, KindSegment, 200},
		{seg.parts[0].uri, ccFile, KindPart, 200},
		// Errors: a second at most.
		{"stream.m3u8?_HLS_part=1", ccShort, KindError, 400},
		{"stream.m3u8?_HLS_msn=-1", ccShort, KindError, 400},
		{fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=1000", msn), ccShort, KindError, 400},
		{fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=99999999999999999999", msn), ccShort, KindError, 400},
		{fmt.Sprintf("stream.m3u8?_HLS_msn=%d", msn+5), ccShort, KindError, 400},
		{fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_skip=NO", seg.msn), ccShort, KindError, 400},
		{"00000000_seg1.mp4", ccShort, KindError, 404},
		{"nope/index.m3u8", ccShort, KindError, 404},
		// Refusals: never stored.
		{"stream.m3u8?share=1.00000000000000000000000000000000", ccNever, KindRefused, 403},
	} {
		r := l.get(tc.name)
		if r.code != tc.code || r.header.Get("Cache-Control") != tc.cc {
			t.Errorf("GET %s: %d, Cache-Control %q; want %d, %q\n%s", tc.name, r.code, r.header.Get("Cache-Control"), tc.code, tc.cc, r.body)
		}
		after, _ := l.h.Responses()
		if after[tc.kind] != before[tc.kind]+1 {
			t.Errorf("GET %s: counted %v, want one more %s than %v", tc.name, after, tc.kind, before)
		}
		before = after
	}

	// The preload-hinted part: the request blocks until the part exists
	// and is then answered like any part.
	hint := pl.hint
	ch := l.async(hint)
	noResponse(t, ch, 100*time.Millisecond, "the hinted part before it exists")
	for frames := 0; !l.hasPart(msn, idx); frames++ {
		if frames > 30 {
			t.Fatalf("part %d.%d does not exist after 30 frames", msn, idx)
		}
		l.nextFrame()
		l.sync()
	}
	r := wantResponse(t, ch, 2*time.Second, "the hinted part once it exists")
	if r.code != 200 || r.header.Get("Cache-Control") != ccFile {
		t.Errorf("hinted part %s: %d, Cache-Control %q; want 200, %q", hint, r.code, r.header.Get("Cache-Control"), ccFile)
	}
}

// A blocking request that runs out of time is answered with the playlist
// as it is, kept no longer than an error (it lacks what its URL names).
func TestBlockingTimeoutIsShortLived(t *testing.T) {
	conf := serverConfig()
	conf.BlockTimeout = time.Second
	l := startLive(t, conf, synthOpts{video: media.CodecH264}, 2500*time.Millisecond)
	pl, _ := l.playlist("")
	msn, idx := hintOf(t, pl)
	r := l.get(fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=%d", msn, idx))
	if r.code != 200 || r.header.Get("Cache-Control") != ccShort {
		t.Errorf("a blocking reload that timed out: %d, Cache-Control %q; want 200, %q", r.code, r.header.Get("Cache-Control"), ccShort)
	}
}

var shareRE = regexp.MustCompile(`[?&]share=([^"&\s]+)`)

// sharesOf returns the distinct share values in a playlist body and
// whether every URI in it carries one.
func sharesOf(body string) (map[string]bool, bool) {
	all := true
	vals := map[string]bool{}
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if !strings.Contains(line, `URI="`) && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		m := shareRE.FindStringSubmatch(line)
		if m == nil {
			all = false
			continue
		}
		vals[m[1]] = true
	}
	return vals, all
}

// TestSharedURIValues: two viewers with their own signed links get
// playlists whose URIs carry one value, shared, never their links; the
// value opens the playlists and files without a key; a forged value, one
// of another path and an expired one are refused, and a playlist opened
// with an older value hands out the current one.
func TestSharedURIValues(t *testing.T) {
	var strict atomic.Bool
	errRequired := errors.New("a signed link is required")
	l := startLiveHub(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond,
		func(hc *server.HubConfig) {
			hc.ReadToken = func(path, key string) (bool, error) {
				switch {
				case key == "tok-alice" || key == "tok-bob":
					return true, nil
				case key == "" && !strict.Load():
					return false, nil // the warm-up
				}
				return false, errRequired
			}
		})
	strict.Store(true)
	if r := l.get("index.m3u8"); r.code != http.StatusUnauthorized || r.header.Get("Cache-Control") != ccNever {
		t.Fatalf("index.m3u8 without a link: %d %q, want 401 %q", r.code, r.header.Get("Cache-Control"), ccNever)
	}
	var share string
	for _, key := range []string{"tok-alice", "tok-bob"} {
		for _, file := range []string{"index.m3u8", "stream.m3u8"} {
			r := l.get(file + "?key=" + key)
			if r.code != 200 {
				t.Fatalf("%s?key=%s: %d %s", file, key, r.code, r.body)
			}
			if strings.Contains(r.body, "tok-") {
				t.Fatalf("%s?key=%s hands out a viewer's link:\n%s", file, key, r.body)
			}
			vals, all := sharesOf(r.body)
			if !all || len(vals) != 1 {
				t.Fatalf("%s?key=%s: shares %v (every URI carries one: %v), want one value in every URI:\n%s", file, key, vals, all, r.body)
			}
			for v := range vals {
				if share == "" {
					share = v
				}
				if v != share {
					t.Fatalf("%s?key=%s: share %s, another viewer got %s", file, key, v, share)
				}
			}
		}
	}
	// The share alone opens the media playlist and its files.
	r := l.get("stream.m3u8?share=" + share)
	if r.code != 200 {
		t.Fatalf("stream.m3u8?share=: %d %s", r.code, r.body)
	}
	pl := parseMedia(t, stripShares(r.body))
	seg := pl.complete()[0]
	for _, f := range []string{seg.mapURI, seg.uri} {
		if r := l.get(f + "?share=" + share); r.code != 200 {
			t.Errorf("%s?share=: %d %s", f, r.code, r.body)
		}
	}
	// Forged, of another path, expired: 403, never stored.
	forged := share[:len(share)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", share[len(share)-1])+1)%16])
	other := l.h.shares.value("live/other", time.Now())
	exp, _, _ := strings.Cut(share, ".")
	for _, v := range []string{forged, other, "+" + share, "0" + share, exp + ".", "x", share + "0"} {
		r := l.get("stream.m3u8?share=" + v)
		if r.code != http.StatusForbidden || r.header.Get("Cache-Control") != ccNever {
			t.Errorf("share %q: %d %q, want 403 %q", v, r.code, r.header.Get("Cache-Control"), ccNever)
		}
	}
	// A window later the value still opens the playlist, which hands out
	// the new window's; two windows later it has expired.
	window := l.conf.ShareWindow
	l.h.now = func() time.Time { return time.Now().Add(window) }
	r = l.get("stream.m3u8?share=" + share)
	vals, _ := sharesOf(r.body)
	if r.code != 200 || vals[share] || len(vals) != 1 {
		t.Errorf("a window later: %d, shares %v; want 200 and a new value", r.code, vals)
	}
	l.h.now = func() time.Time { return time.Now().Add(2 * window) }
	if r := l.get("stream.m3u8?share=" + share); r.code != http.StatusForbidden || !strings.Contains(r.body, "expired") {
		t.Errorf("two windows later: %d %s, want 403 expired", r.code, r.body)
	}
}

// stripShares drops the share queries from a playlist (parseMedia reads
// streamhub's own names).
func stripShares(body string) string { return shareRE.ReplaceAllString(body, "") }

// A share is one value per scope and window: the same at any time of a
// window, another for the next window or another scope; it checks until
// the end of the window after the one it was made in.
func TestShareWindows(t *testing.T) {
	s := newShares("0123456789abcdef", time.Hour)
	t0 := time.Unix(36000, 0) // a window's start
	v := s.value("live/x", t0)
	if s.value("live/x", t0.Add(59*time.Minute)) != v || s.value("live/x", t0.Add(time.Hour)) == v || s.value("live/y", t0) == v {
		t.Fatal("a share is not one value per scope and window")
	}
	for _, tc := range []struct {
		at   time.Duration
		want error
	}{{0, nil}, {119 * time.Minute, nil}, {2 * time.Hour, ErrShareExpired}} {
		if err := s.check("live/x", v, t0.Add(tc.at)); !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("check at +%s: %v, want %v", tc.at, err, tc.want)
		}
	}
	if newShares("0123456789abcdef", time.Hour).value("live/x", t0) != v {
		t.Error("the same secret makes another value (a restart would break the players)")
	}
	if newShares("", time.Hour).value("live/x", t0) == newShares("", time.Hour).value("live/x", t0) {
		t.Error("two random keys make the same value")
	}
	if err := s.check("live/x", v, t0); err != nil {
		t.Fatal(err)
	}
}

// A ladder rung is opened by its source's share value, as by its source's
// key, and hands out the source's value; a value of another path opens
// nothing, and neither does a rung's own (never handed out).
func TestShareScopeOfRungs(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := server.NewHub(server.HubConfig{Logger: log, PathConfig: func(p string) server.PathConfig {
		c := server.DefaultPathConfig()
		c.ReadKey = "k"
		if src, ok := strings.CutSuffix(p, "/480p"); ok {
			c.RungOf = src
		}
		return c
	}})
	h := New(testConfig(), hub, log)
	defer func() { h.Close(); hub.Close() }()
	now := time.Now()
	for _, tc := range []struct {
		path, scope string
		ok          bool
	}{
		{"live/x", "live/x", true},
		{"live/x/480p", "live/x", true},
		{"live/y/480p", "live/x", false},
		{"live/x/480p", "live/x/480p", false},
		{"live/y", "live/x", false},
	} {
		v := h.shares.value(tc.scope, now)
		req := httptest.NewRequest(http.MethodGet, "/"+tc.path+"/stream.m3u8?share="+v, nil)
		q, err := h.admit(req, tc.path, req.URL.Query())
		if (err == nil) != tc.ok {
			t.Errorf("%s with the share of %s: %v, want ok %v", tc.path, tc.scope, err, tc.ok)
		}
		if err == nil && q != h.shares.query("live/x", now) {
			t.Errorf("%s hands out %q, want the source's value", tc.path, q)
		}
	}
}
