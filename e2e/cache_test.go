//go:build e2e && unix

package e2e

// LL-HLS through a real cache tier: the recipes in deploy/ run as given
// (only the addresses and directories rewritten) in Debian's varnishd and
// nginx, each started by the test on a free loopback port with its own
// temporary directory and stopped with it. hls.js plays through each,
// 100 bench/hlsload clients through Varnish cost the origin about one
// request per part and playlist version (counted by the origin's
// /metrics), signed links work through the cache, and cached errors expire
// when the origin said.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamhub/streamhub/auth"
)

// cacheInstallHint says how to get the caches.
const cacheInstallHint = "install it with scripts/test.sh (or: sudo apt-get install -y varnish nginx)"

// cacheProxy is a running varnishd or nginx in front of a streamhub.
type cacheProxy struct {
	name string
	addr string // HOST:PORT
	dir  string // its temporary directory (nginx: error.log)
	p    *proc
}

// url is the URL of file of path's HLS output through the cache.
func (c *cacheProxy) url(path, file string) string {
	return "http://" + c.addr + "/" + path + "/" + file
}

// cacheFreePort returns a loopback port nobody listens on now.
func cacheFreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// recipe reads a file of deploy/ and applies the replacements (old, new
// pairs), each of which must match.
func recipe(t testing.TB, name string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("deploy/%s no longer has %q", name, repl[i])
		}
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	return s
}

// waitCache waits until the cache answers HTTP on its port.
func waitCache(t testing.TB, c *cacheProxy) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + c.addr + "/no-such-page-cache-probe")
		if err == nil {
			resp.Body.Close()
			return
		}
		if c.p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s did not answer on %s: %v\nstdout:\n%s\nstderr:\n%s", c.name, c.addr, err,
				tail(c.p.stdout.String(), 20), tail(c.p.stderr.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startVarnish runs deploy/varnish/streamhub.vcl in varnishd in the
// foreground (-F), in a work directory of its own (-n), as the test's user
// (-j none), in front of origin (HOST:PORT).
func startVarnish(t testing.TB, origin string) *cacheProxy {
	t.Helper()
	if _, err := exec.LookPath("varnishd"); err != nil {
		if _, err := os.Stat("/usr/sbin/varnishd"); err != nil {
			t.Fatalf("varnishd not found: %s", cacheInstallHint)
		}
	}
	bin := "varnishd"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "/usr/sbin/varnishd"
	}
	host, port, _ := net.SplitHostPort(origin)
	dir := t.TempDir()
	vcl := filepath.Join(dir, "streamhub.vcl")
	if err := os.WriteFile(vcl, []byte(recipe(t, "varnish/streamhub.vcl",
		`.host = "127.0.0.1";`, `.host = "`+host+`";`, `.port = "8080";`, `.port = "`+port+`";`)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &cacheProxy{name: "varnish", addr: cacheFreePort(t)}
	c.p = startProc(t, bin, "-F", "-j", "none", "-n", filepath.Join(dir, "work"), "-a", c.addr, "-f", vcl,
		"-s", "malloc,256m", "-T", "none")
	waitCache(t, c)
	return c
}

// startNginx runs deploy/nginx/streamhub.conf in nginx (daemon off, its
// own prefix, pid file, logs, temp and cache directories) in front of
// origin, with proxy_cache_lock on or off.
func startNginx(t testing.TB, origin string, lock bool) *cacheProxy {
	t.Helper()
	bin := "nginx"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("nginx not found: %s", cacheInstallHint)
		}
	}
	dir := t.TempDir()
	c := &cacheProxy{name: "nginx", addr: cacheFreePort(t), dir: dir}
	lockValue := "on"
	if !lock {
		lockValue = "off"
		c.name = "nginx-nolock"
	}
	site := recipe(t, "nginx/streamhub.conf",
		"server 127.0.0.1:8080;", "server "+origin+";",
		"listen 80;", "listen "+c.addr+";",
		"/var/cache/nginx/streamhub", filepath.Join(dir, "cache"),
		"proxy_cache_lock on;", "proxy_cache_lock "+lockValue+";")
	if err := os.WriteFile(filepath.Join(dir, "streamhub.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	// As root, nginx's workers would run as nobody, who cannot enter the
	// test's temporary directory.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	main := fmt.Sprintf(`daemon off;
%[2]s
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/streamhub.conf;
}
`, dir, user)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	c.p = startProc(t, bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	waitCache(t, c)
	return c
}

// originResponses scrapes the origin's LL-HLS responses by kind.
func originResponses(t testing.TB, s *streamhub) map[string]float64 {
	t.Helper()
	_, body := httpGet(t, "http://"+s.httpAddr+"/metrics")
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, `streamhub_hls_responses_total{kind="`); ok {
			kind, v, _ := strings.Cut(rest, `"} `)
			out[kind], _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return out
}

// cacheGet GETs url and returns the response with its body read.
func cacheGet(t testing.TB, url string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// cacheHit reports whether the cache says it answered from its store.
func cacheHit(resp *http.Response) bool {
	return resp.Header.Get("X-Cache") == "HIT" || resp.Header.Get("X-Cache-Status") == "HIT"
}

// uriRE finds the URIs of a playlist: URI="..." attributes and URI lines.
var uriRE = regexp.MustCompile(`(?m)URI="([^"]+)"|^([^#\s][^\s]*)$`)

func playlistURIs(body string) []string {
	var out []string
	for _, m := range uriRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1]+m[2])
	}
	return out
}

// playThroughCache runs hls.mjs on url and checks that hls.js played with
// frames advancing, made blocking reloads and loaded parts.
func playThroughCache(t *testing.T, browserDir, url string) hlsPlayResult {
	t.Helper()
	node := startProc(t, "node", filepath.Join(browserDir, "hls.mjs"), url, "--play", "8", "--timeout", "40")
	code, ok := node.wait(60 * time.Second)
	if !ok {
		node.kill()
		t.Fatalf("hls.mjs did not end within 60 s; stderr:\n%s", tail(node.stderr.String(), 30))
	}
	var res hlsPlayResult
	line := ""
	sc := bufio.NewScanner(strings.NewReader(node.stdout.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, `{"ok"`) {
			line = l
		}
	}
	if line == "" || json.Unmarshal([]byte(line), &res) != nil {
		t.Fatalf("hls.mjs (exit status %d): no result; stdout:\n%s\nstderr:\n%s", code, tail(node.stdout.String(), 20), tail(node.stderr.String(), 20))
	}
	t.Logf("hls.js through %s: startup %d ms, %d playlist requests (%d blocking, e.g. %q), %d parts, %d segments, latency %.2f s, %d stalls",
		url, res.StartupMs, res.PlaylistRequests, res.BlockingRequests, res.SampleRequests, res.PartRequests, res.SegmentRequests, res.Latency, res.Stalls)
	if code != 0 || len(res.Errors) > 0 {
		t.Errorf("hls.mjs: exit status %d, player errors %q", code, res.Errors)
	}
	if len(res.Samples) < 2 {
		t.Fatalf("no playback samples")
	}
	a, b := res.Samples[0], res.Samples[len(res.Samples)-1]
	if span := time.Duration(b.T-a.T) * time.Millisecond; b.Frames-a.Frames < int(span.Seconds()*30*0.6) || b.CT <= a.CT {
		t.Errorf("frames %d -> %d, currentTime %.3f -> %.3f over %s: want about 30 frames a second", a.Frames, b.Frames, a.CT, b.CT, span)
	}
	if !res.CanBlockReload || res.BlockingRequests < 5 || res.PartRequests < 5 {
		t.Errorf("canBlockReload %v, %d blocking reloads, %d parts: want LL-HLS through the cache", res.CanBlockReload, res.BlockingRequests, res.PartRequests)
	}
	return res
}

// TestCacheHLSJS: hls.js (lowLatencyMode, headless Chromium) plays
// through Varnish and through nginx with the recipes as shipped: frames
// advance, blocking reloads and parts go through the cache, and the cache
// answers from its store (its hit header) when a second viewer asks for a
// part the first one got.
func TestCacheHLSJS(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/cache"))
	waitLive(t, s, "live/cache", pub)
	for _, c := range []*cacheProxy{startVarnish(t, s.httpAddr), startNginx(t, s.httpAddr, true)} {
		t.Run(c.name, func(t *testing.T) {
			playThroughCache(t, browserDir, c.url("live/cache", "index.m3u8"))
			// A part the cache has: the second GET is a hit, with the
			// origin's Cache-Control.
			_, body := cacheGet(t, c.url("live/cache", "stream.m3u8"))
			uris := playlistURIs(body)
			var part string
			for _, u := range uris {
				if strings.Contains(u, "part") && !strings.Contains(body, `PRELOAD-HINT:TYPE=PART,URI="`+u) {
					part = u
				}
			}
			if part == "" {
				t.Fatalf("no part in:\n%s", body)
			}
			cacheGet(t, c.url("live/cache", part))
			resp, _ := cacheGet(t, c.url("live/cache", part))
			if resp.StatusCode != 200 || !cacheHit(resp) || resp.Header.Get("Cache-Control") != "public, max-age=3600, immutable" {
				t.Errorf("second GET of %s: %d, X-Cache %q, X-Cache-Status %q, Cache-Control %q; want a 200 hit, immutable",
					part, resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("X-Cache-Status"), resp.Header.Get("Cache-Control"))
			}
			if c.name == "varnish" && resp.Header.Get("Age") == "" {
				t.Errorf("Varnish sent no Age header")
			}
		})
	}
}

// hlsloadSummary is what bench/hlsload -json writes (the fields read here).
type hlsloadSummary struct {
	Started    int            `json:"started"`
	Errors     int            `json:"errors"`
	ErrorKinds map[string]int `json:"error_kinds"`
	Parts      int            `json:"parts"`
	Playlists  int            `json:"blocking_playlists"`
	LagMedian  float64        `json:"part_lag_ms_median"`
}

// buildHLSLoad builds bench/hlsload and returns the binary.
func buildHLSLoad(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hlsload")
	if out, err := exec.Command("go", "build", "-o", bin, "../bench/hlsload").CombinedOutput(); err != nil {
		t.Fatalf("building bench/hlsload: %v\n%s", err, out)
	}
	return bin
}

// runHLSLoad runs n bench/hlsload clients (bin) on url for d.
func runHLSLoad(t *testing.T, bin, url string, n int, d time.Duration, extra ...string) hlsloadSummary {
	t.Helper()
	js := filepath.Join(t.TempDir(), "hlsload.json")
	args := append([]string{"-url", url, "-n", strconv.Itoa(n), "-t", d.String(), "-json", js}, extra...)
	out, _, code := run(t, d+time.Minute, bin, args...)
	if code != 0 {
		t.Fatalf("hlsload: exit status %d\n%s", code, out)
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var sum hlsloadSummary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	t.Logf("hlsload through %s:\n%s", url, out)
	return sum
}

// TestCacheVarnishFanIn: 100 LL-HLS clients (bench/hlsload, a blocking
// reload and the preload-hinted part for every part, as hls.js does)
// through Varnish cost the origin about one request per part and per
// playlist version, counted at the origin; and clients that vanish while
// Varnish waits on a blocking request leave the origin bounded.
func TestCacheVarnishFanIn(t *testing.T) {
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/fan"))
	waitLive(t, s, "live/fan", pub)
	v := startVarnish(t, s.httpAddr)
	// Start the muxer and let it fill its window.
	waitHLSSegments(t, s, "live/fan", 2, 20*time.Second)

	bin := buildHLSLoad(t)
	before := originResponses(t, s)
	t0 := time.Now()
	const clients = 100
	sum := runHLSLoad(t, bin, v.url("live/fan", "index.m3u8"), clients, 10*time.Second, "-preload")
	elapsed := time.Since(t0)
	after := originResponses(t, s)
	d := func(k string) float64 { return after[k] - before[k] }
	// Parts made while the clients played (hls.partTarget 200 ms), and the
	// playlist versions: one per part.
	parts := elapsed.Seconds() / 0.2
	t.Logf("origin over %s (~%.0f parts): %.0f parts, %.0f blocking playlists, %.0f plain, %.0f multivariant, %.0f init, %.0f errors; clients got %d parts, %d blocking reloads",
		elapsed.Round(time.Millisecond), parts, d("part"), d("playlist_blocking"), d("playlist"), d("multivariant"), d("init"), d("error"), sum.Parts, sum.Playlists)
	if sum.Started != clients || sum.Errors != 0 {
		t.Errorf("hlsload: %d of %d clients started, %d errors %v", sum.Started, clients, sum.Errors, sum.ErrorKinds)
	}
	if sum.Parts < clients*int(parts)/2 {
		t.Errorf("the clients got %d parts, want about %d each", sum.Parts, int(parts))
	}
	// About one origin request per part and per playlist version: a
	// little more, since the delta-update playlist and the full one are
	// two URLs and a client joining may ask for a part already gone by.
	if got, limit := d("part"), 1.2*parts+10; got > limit {
		t.Errorf("origin served %.0f parts for ~%.0f parts made: want at most %.0f (one per part)", got, parts, limit)
	}
	if got, limit := d("playlist_blocking"), 1.2*parts+10; got > limit {
		t.Errorf("origin served %.0f blocking playlists for ~%.0f versions: want at most %.0f", got, parts, limit)
	}
	if got := d("playlist") + d("multivariant") + d("init"); got > 60 {
		t.Errorf("origin served %.0f plain playlists, multivariant playlists and inits to %d joining clients: want them coalesced", got, clients)
	}

	// Clients that ask for a part two segments ahead and vanish at once:
	// Varnish goes on with one fetch per URL, the origin holds it at most
	// hls.blockTimeout, and its goroutines come back.
	goroutines := func() float64 {
		_, body := httpGet(t, "http://"+s.httpAddr+"/metrics")
		for line := range strings.Lines(string(body)) {
			if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
				n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return n
			}
		}
		return -1
	}
	g0 := goroutines()
	_, body := httpGet(t, s.hlsURL("live/fan", "stream.m3u8"))
	msn := 0
	for _, m := range regexp.MustCompile(`part(\d+)\.\d+\.mp4`).FindAllStringSubmatch(string(body), -1) {
		msn, _ = strconv.Atoi(m[1])
	}
	b0 := originResponses(t, s)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			url := v.url("live/fan", fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=%d", msn+1, i%3))
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	time.Sleep(6 * time.Second) // hls.blockTimeout and a second
	b1 := originResponses(t, s)
	got := b1["playlist_blocking"] + b1["error"] - b0["playlist_blocking"] - b0["error"]
	g1 := goroutines()
	t.Logf("200 vanished clients on 3 URLs: %.0f origin answers, goroutines %.0f -> %.0f", got, g0, g1)
	if got > 6 {
		t.Errorf("200 clients that vanished on 3 blocking URLs cost the origin %.0f answers: want one per URL (a few)", got)
	}
	if g1 > g0+20 {
		t.Errorf("origin goroutines %.0f -> %.0f after the vanished clients: want them back", g0, g1)
	}
}

// TestCacheSignedLinks: with signed play links required, two viewers with
// their own links open the stream through Varnish; the playlists hand out
// one share value and never a link; the second viewer's part is a cache
// hit; hls.js plays a signed link through the cache; a forged value and
// a missing link are refused, and not stored.
func TestCacheSignedLinks(t *testing.T) {
	const secret = "cache-test-secret-0123456789"
	s := startServer(t, "auth:\n  playSecret: "+secret+"\n  signedPlayOnly: true\n")
	pub := startPublisher(t, s.rtmpURL("live/signed"))
	waitLiveSigned(t, s, "live/signed", pub, secret)
	v := startVarnish(t, s.httpAddr)
	signer := auth.NewSigner(secret, true)
	links := []string{signer.Sign("live/signed", time.Now().Add(time.Hour)), signer.Sign("live/signed", time.Now().Add(2*time.Hour))}

	share := ""
	var parts []string
	for i, link := range links {
		resp, body := cacheGet(t, v.url("live/signed", "index.m3u8?key="+link))
		if resp.StatusCode != 200 {
			t.Fatalf("viewer %d: index.m3u8?key=: %d %s", i, resp.StatusCode, body)
		}
		media := playlistURIs(body)[0]
		resp, body = cacheGet(t, v.url("live/signed", media))
		if resp.StatusCode != 200 {
			t.Fatalf("viewer %d: %s: %d %s", i, media, resp.StatusCode, body)
		}
		for _, l := range links {
			if strings.Contains(body, l) || strings.Contains(body, "s1.") {
				t.Fatalf("viewer %d: a playlist hands out a signed link:\n%s", i, body)
			}
		}
		_, q, _ := strings.Cut(media, "?")
		if share == "" {
			share = q
		} else if q != share {
			t.Errorf("viewer %d got %q, viewer 0 %q: want one value for both", i, q, share)
		}
		parts = nil
		for _, u := range playlistURIs(body) {
			if strings.Contains(u, "part") && !strings.Contains(body, `PRELOAD-HINT:TYPE=PART,URI="`+u) {
				parts = append(parts, u)
			}
		}
	}
	if len(parts) == 0 {
		t.Fatal("no part listed")
	}
	part := parts[len(parts)-1]
	r1, _ := cacheGet(t, v.url("live/signed", part))
	r2, _ := cacheGet(t, v.url("live/signed", part))
	if r1.StatusCode != 200 || r2.StatusCode != 200 || !cacheHit(r2) {
		t.Errorf("%s twice: %d then %d (X-Cache %q): want the second viewer's a hit", part, r1.StatusCode, r2.StatusCode, r2.Header.Get("X-Cache"))
	}
	// hls.js plays the signed link through the cache: it appends its
	// directives to the share value's query, and Varnish sorts them.
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	res := playThroughCache(t, browserDir, v.url("live/signed", "index.m3u8?key="+links[0]))
	for _, u := range res.SampleRequests {
		if !strings.Contains(u, share) || strings.Contains(u, "s1.") {
			t.Errorf("hls.js asked for %s: want the share value, never the link", u)
		}
	}

	// Refused, and not stored: asking again reaches the origin again.
	forged := strings.Replace(share, "share=", "share=1", 1)
	for _, u := range []string{"stream.m3u8?" + forged, "index.m3u8", "index.m3u8?key=s1.99999999999.0000"} {
		for range 2 {
			resp, body := cacheGet(t, v.url("live/signed", u))
			if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized || cacheHit(resp) {
				t.Errorf("%s: %d (X-Cache %q) %s: want 401 or 403 from the origin", u, resp.StatusCode, resp.Header.Get("X-Cache"), body)
			}
		}
	}
}

// waitLiveSigned waits until path plays over HTTP-FLV with a signed link.
func waitLiveSigned(t testing.TB, s *streamhub, path string, pub *proc, secret string) {
	t.Helper()
	waitLiveURL(t, s.flvURL(path)+"?key="+auth.NewSigner(secret, true).Sign(path, time.Now().Add(time.Hour)), path, pub)
}

// TestCacheErrorExpiry: a 404 for a stream that is not live is kept by
// Varnish for the second the origin allows, never longer: asked every
// 100 ms for 3.5 s, the origin sees it again about once a second, and the
// answer's Age never passes one second. The nginx recipe keeps no error.
func TestCacheErrorExpiry(t *testing.T) {
	s := startServer(t, "")
	for _, c := range []*cacheProxy{startVarnish(t, s.httpAddr), startNginx(t, s.httpAddr, true)} {
		t.Run(c.name, func(t *testing.T) {
			url := c.url("live/"+c.name+"-none", "index.m3u8")
			before := originResponses(t, s)["error"]
			hits, gets := 0, 0
			for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				resp, _ := cacheGet(t, url)
				gets++
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("%d, want 404", resp.StatusCode)
				}
				if cacheHit(resp) {
					hits++
				}
				if age, _ := strconv.Atoi(resp.Header.Get("Age")); age > 1 {
					t.Errorf("a 404 served with Age %d: kept longer than its max-age=1", age)
				}
			}
			n := originResponses(t, s)["error"] - before
			t.Logf("%s: %d GETs over 3.5 s: %d hits, %.0f reached the origin", c.name, gets, hits, n)
			if c.name == "nginx" {
				// The recipe stores no error (nginx would keep a max-age=1
				// answer up to two seconds).
				if hits > 0 || int(n) != gets {
					t.Errorf("%.0f origin requests and %d hits for %d GETs: want every GET at the origin", n, hits, gets)
				}
				return
			}
			if n < 3 || n > 8 || hits < gets/2 {
				t.Errorf("%.0f origin requests and %d hits for %d GETs: want the 404 kept about a second at a time (4 or 5 origin requests)", n, hits, gets)
			}
		})
	}
}

// TestCachePassThrough: through each recipe, HTTP-FLV streams, the chat's
// WebSocket upgrades, and the API and the pages are answered by the
// origin, not stored.
func TestCachePassThrough(t *testing.T) {
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/pass"))
	waitLive(t, s, "live/pass", pub)
	for _, c := range []*cacheProxy{startVarnish(t, s.httpAddr), startNginx(t, s.httpAddr, true)} {
		t.Run(c.name, func(t *testing.T) {
			// HTTP-FLV: the header and a first tag arrive through the cache.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addr+"/live/pass.flv", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			n, err := io.ReadAtLeast(resp.Body, buf, 1024)
			resp.Body.Close()
			if err != nil || string(buf[:3]) != "FLV" {
				t.Errorf("FLV through %s: %d bytes %q, %v", c.name, n, buf[:min(n, 3)], err)
			}
			// The chat's WebSocket.
			ws, wresp, err := websocket.DefaultDialer.Dial("ws://"+c.addr+"/chat/live/pass", nil)
			if err != nil {
				code := 0
				if wresp != nil {
					code = wresp.StatusCode
				}
				t.Errorf("chat WebSocket through %s: %v (HTTP %d)", c.name, err, code)
			} else {
				ws.Close()
			}
			// The API and a page: never stored.
			for _, p := range []string{"/api/v1/streams", "/"} {
				for range 2 {
					resp, _ := cacheGet(t, "http://"+c.addr+p)
					if resp.StatusCode != 200 || cacheHit(resp) {
						t.Errorf("%s through %s: %d, X-Cache %q %q: want 200 from the origin", p, c.name, resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("X-Cache-Status"))
					}
				}
			}
		})
	}
}
