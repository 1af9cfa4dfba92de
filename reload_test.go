package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func valid(t *testing.T, yml string) *Config {
	t.Helper()
	c := mustLoad(t, yml)
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("Validate: %s", joinErrs(errs))
	}
	return c
}

func tree(t *testing.T, c *Config) *yaml.Node {
	t.Helper()
	n, err := configTree(c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Every key of config.yml has its own entry or a section's in keyClasses,
// and every entry names keys that exist: a new key cannot go unclassified.
func TestKeyClassesCoverConfig(t *testing.T) {
	keys := flatten(tree(t, valid(t, `
paths:
  overrides:
    - {match: cam1, source: "rtsp://127.0.0.1:1/x"}
`)))
	if len(keys) < 80 {
		t.Fatalf("flatten found %d keys; want every key of config.yml", len(keys))
	}
	used := map[string]bool{}
	for k := range keys {
		c, ok := classOf(k)
		if !ok {
			t.Errorf("config key %s is in no entry of keyClasses: classify it hot or restart-only", k)
		}
		used[c.key] = true
	}
	for _, c := range keyClasses {
		if !used[c.key] {
			t.Errorf("keyClasses entry %q matches no config key", c.key)
		}
		if c.hot && c.how == "" {
			t.Errorf("keyClasses entry %q is hot but does not say how it applies", c.key)
		}
	}
	for key, hot := range map[string]bool{"log.level": true, "log.format": false, "rtmp.address": false,
		"paths.overrides[3].readKey": true, "paths.default.gopCache.maxFrames": true, "transcode.ladder[0].videoBitrate": true,
		"transcode.threads": true, "transcode.ffmpeg": false, "hls.window": true, "hls.blockTimeout": false, "auth.hookURL": true, "auth.playSecret": false,
		"webrtc.iceServers": false, "nosuch.key": false} {
		if isHot(key) != hot {
			t.Errorf("isHot(%s) = %v, want %v", key, !hot, hot)
		}
	}
}

// A config written out and read back is the same config: the merge of a
// reload goes through this form.
func TestConfigTreeRoundTrip(t *testing.T) {
	c := valid(t, `
log: {level: debug}
transcode:
  ladder:
    - {name: 480p, height: 480, videoBitrate: 1200k, maxrate: 1500k, audioBitrate: 96k}
webrtc:
  iceServers: [{urls: ["stun:stun.example.com:3478"]}]
paths:
  default: {join: live, catchUp: 1500ms}
  overrides:
    - {match: "private/*", publishKey: secret-key, gracePeriod: 3s}
`)
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(tree(t, c)); err != nil {
		t.Fatal(err)
	}
	back := valid(t, buf.String())
	if d := diffConfigs(tree(t, c), tree(t, back)); len(d.Hot)+len(d.Restart) > 0 {
		t.Fatalf("round trip changed %v %v", d.Hot, d.Restart)
	}
	if pc := back.PathConfig("private/a"); pc.PublishKey != "secret-key" || pc.Join != "live" || pc.GracePeriod != 3*time.Second {
		t.Errorf("override after round trip: %+v", pc)
	}
}

func TestDiffConfigs(t *testing.T) {
	old := valid(t, "")
	next := valid(t, `
log: {level: debug, format: json}
rtmp: {address: ":19350"}
hls: {window: 9}
transcode:
  ladder:
    - {name: 480p, height: 480, videoBitrate: 1000k, audioBitrate: 96k}
paths:
  default: {readKey: watch-key}
  overrides:
    - {match: "cam/*", join: live}
`)
	d := diffConfigs(tree(t, old), tree(t, next))
	for _, k := range []string{"log.level", "hls.window", "paths.default.readKey", "paths.overrides[0].match", "paths.overrides[0].join",
		"transcode.ladder[0].videoBitrate", "transcode.ladder[1].name"} {
		if !slices.Contains(d.Hot, k) {
			t.Errorf("hot changes %v lack %s", d.Hot, k)
		}
	}
	if want := []string{"log.format", "rtmp.address"}; !slices.Equal(d.Restart, want) {
		t.Errorf("restart-only changes %v, want %v", d.Restart, want)
	}
	if slices.Contains(d.Hot, "paths.default.join") {
		t.Errorf("unchanged key listed: %v", d.Hot)
	}
}

func TestMergeHot(t *testing.T) {
	old := valid(t, `
rtmp: {address: ":1935"}
auth: {playSecret: "0123456789abcdef"}
`)
	next := valid(t, `
log: {level: warn}
rtmp: {address: ":2935"}
http: {address: ":9090"}
paths:
  overrides:
    - {match: "new/*", readKey: k2, maxReaders: 3}
`)
	eff, d, err := mergeHot(old, next)
	if err != nil {
		t.Fatal(err)
	}
	if eff.RTMP.Address != ":1935" || eff.HTTP.Address != old.HTTP.Address || eff.Auth.PlaySecret != "0123456789abcdef" {
		t.Errorf("restart-only keys changed: rtmp %q http %q playSecret %q", eff.RTMP.Address, eff.HTTP.Address, eff.Auth.PlaySecret)
	}
	if eff.Log.Level != "warn" {
		t.Errorf("log.level %q, want warn", eff.Log.Level)
	}
	if pc := eff.PathConfig("new/a"); pc.ReadKey != "k2" || pc.MaxReaders != 3 {
		t.Errorf("new override not applied: %+v", pc)
	}
	if want := []string{"auth.playSecret", "http.address", "rtmp.address"}; !slices.Equal(d.Restart, want) {
		t.Errorf("needs restart %v, want %v", d.Restart, want)
	}

	// Nothing restart-only changed: the new config itself runs.
	if eff2, d2, err := mergeHot(old, valid(t, "rtmp: {address: \":1935\"}\nauth: {playSecret: \"0123456789abcdef\"}\nlog: {level: error}")); err != nil ||
		eff2.Log.Level != "error" || len(d2.Restart) != 0 || !slices.Equal(d2.Hot, []string{"log.level"}) {
		t.Errorf("hot-only reload: %v %+v", err, d2)
	}

	// The ladder switched on (it was empty at start) needs a restart.
	off := valid(t, "transcode: {ladder: []}")
	eff3, d3, err := mergeHot(off, valid(t, "log: {level: debug}"))
	if err != nil {
		t.Fatal(err)
	}
	if len(eff3.Transcode.Ladder) != 0 || !slices.Contains(d3.Restart, "transcode.ladder") || eff3.Log.Level != "debug" {
		t.Errorf("ladder off → on: ladder %d rungs, restart %v, level %s", len(eff3.Transcode.Ladder), d3.Restart, eff3.Log.Level)
	}
}

// newTestReloader returns a reloader of a config file in a temp dir,
// running on its first content, and counts the applies.
func newTestReloader(t *testing.T, first string) (*reloader, *atomic.Pointer[Config], string, *atomic.Int64, *syncWriter) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "streamhub.yml")
	if err := os.WriteFile(file, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := readConfigFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var live atomic.Pointer[Config]
	live.Store(c)
	var applies atomic.Int64
	logBuf := &syncWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logBuf, nil))
	r := newReloader(file, &live, func(_, _ *Config) { applies.Add(1) }, log)
	return r, &live, file, &applies, logBuf
}

// syncWriter is a log sink the test reads while the reloader writes.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// Garbage, a half-written file and a deleted file are refused: the running
// config stays, and the status, the counters and the log say why.
func TestReloadRefusesBadFiles(t *testing.T) {
	const good = "log:\n  level: info\npaths:\n  default:\n    readKey: first-key\n"
	r, live, file, applies, logBuf := newTestReloader(t, good)
	running := live.Load()
	for _, bad := range []struct{ name, content string }{
		{"garbage", "\x00\x01\xff not: [yaml"},
		{"half-written", good[:len(good)-12]},
		{"invalid value", "log:\n  level: loud\n"},
		{"empty", " \n"},
		{"deleted", ""},
	} {
		if bad.name == "deleted" {
			os.Remove(file)
		} else if err := os.WriteFile(file, []byte(bad.content), 0o600); err != nil {
			t.Fatal(err)
		}
		st := r.Reload("api")
		if st.OK || st.Error == "" {
			t.Errorf("%s: status %+v, want refused with an error", bad.name, st)
		}
		if live.Load() != running {
			t.Errorf("%s: the running config was replaced", bad.name)
		}
		if got := r.LastReload(); got.OK || got.Error != st.Error || got.At.IsZero() {
			t.Errorf("%s: LastReload %+v", bad.name, got)
		}
	}
	// The watcher's reloads of a file still missing: no new failure.
	r.reloadIfChanged()
	r.reloadIfChanged()
	// The watcher reading a save between its truncation and its write:
	// neither applied nor a failure (the write's event reads it again).
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r.reloadIfChanged()
	if live.Load() != running {
		t.Error("the watcher applied an empty file")
	}
	if applies.Load() != 0 {
		t.Errorf("%d applies of refused files", applies.Load())
	}
	if st := r.LastReload(); st.Failures != 5 || st.Successes != 0 {
		t.Errorf("counters %d ok %d failed, want 0 and 5", st.Successes, st.Failures)
	}
	if !strings.Contains(logBuf.String(), "config reload refused") || !strings.Contains(logBuf.String(), "log.level") {
		t.Errorf("log lacks the refusal and its key:\n%s", logBuf.String())
	}
	// The file fixed: applied.
	os.WriteFile(file, []byte(strings.Replace(good, "first-key", "second-key", 1)+"rtmp:\n  address: \":1\"\n"), 0o600)
	st := r.Reload("signal")
	if !st.OK || live.Load().PathConfig("a").ReadKey != "second-key" || applies.Load() != 1 {
		t.Fatalf("fixed file: %+v, readKey %q", st, live.Load().PathConfig("a").ReadKey)
	}
	if !slices.Equal(st.NeedsRestart, []string{"rtmp.address"}) || !strings.Contains(logBuf.String(), "needs restart: rtmp.address") {
		t.Errorf("needs restart %v; log:\n%s", st.NeedsRestart, logBuf.String())
	}
	if live.Load().RTMP.Address != running.RTMP.Address {
		t.Errorf("rtmp.address applied without a restart: %q", live.Load().RTMP.Address)
	}
}

func TestReloadWithoutFile(t *testing.T) {
	var live atomic.Pointer[Config]
	live.Store(valid(t, ""))
	r := newReloader("", &live, func(_, _ *Config) { t.Error("applied") }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if st := r.Reload("signal"); st.OK || !strings.Contains(st.Error, "embedded defaults") {
		t.Errorf("status %+v", st)
	}
}

// waitFor polls cond until it holds or 5 s passed (a file event's delivery
// has no bound; this is no timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The watcher sees an editor's rename-on-save, a symlink swap as in a
// Kubernetes ConfigMap, and a plain write; an unrelated file in the
// directory changes nothing.
func TestWatchReload(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_a")
	os.Mkdir(data, 0o700)
	os.WriteFile(filepath.Join(data, "streamhub.yml"), []byte("paths: {default: {readKey: k0}}\n"), 0o600)
	os.Symlink("..2026_a", filepath.Join(dir, "..data"))
	file := filepath.Join(dir, "streamhub.yml")
	os.Symlink("..data/streamhub.yml", file)
	c, err := readConfigFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var live atomic.Pointer[Config]
	live.Store(c)
	var applies atomic.Int64
	r := newReloader(file, &live, func(_, _ *Config) { applies.Add(1) }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	hup, stopHUP := notifyHUP()
	go watchReload(ctx, r, hup, done)
	t.Cleanup(func() { cancel(); <-done; stopHUP() })
	readKey := func(want string) func() bool {
		return func() bool { return live.Load().PathConfig("a").ReadKey == want }
	}
	time.Sleep(100 * time.Millisecond) // the watch is added by the goroutine

	// ConfigMap: a new timestamp dir, ..data_tmp renamed onto ..data.
	data2 := filepath.Join(dir, "..2026_b")
	os.Mkdir(data2, 0o700)
	os.WriteFile(filepath.Join(data2, "streamhub.yml"), []byte("paths: {default: {readKey: k1}}\n"), 0o600)
	os.Symlink("..2026_b", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the symlink swap", readKey("k1"))

	// An editor: write a temp file, rename it over the config.
	os.Remove(file)
	os.WriteFile(file, []byte("paths: {default: {readKey: k1}}\n"), 0o600)
	tmp := filepath.Join(dir, ".streamhub.yml.swp")
	os.WriteFile(tmp, []byte("paths: {default: {readKey: k2}}\n"), 0o600)
	os.Rename(tmp, file)
	waitFor(t, "the rename-on-save", readKey("k2"))

	// A plain write in place.
	os.WriteFile(file, []byte("paths: {default: {readKey: k3}}\n"), 0o600)
	waitFor(t, "the write", readKey("k3"))

	n := applies.Load()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
	time.Sleep(3 * reloadDebounce)
	if applies.Load() != n {
		t.Errorf("an unrelated file in the directory reloaded the config")
	}
	// SIGHUP reloads even an unchanged file.
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, "the SIGHUP reload", func() bool { return applies.Load() == n+1 })
	if st := r.LastReload(); !st.OK || st.Trigger != "signal" {
		t.Errorf("after SIGHUP: %+v", st)
	}
}
