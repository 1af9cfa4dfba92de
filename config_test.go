package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/server"
)

func mustLoad(t *testing.T, yml string) *Config {
	t.Helper()
	var data []byte
	if yml != "" {
		data = []byte(yml)
	}
	c, err := loadConfig(data)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	return c
}

func joinErrs(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Error())
		b.WriteString("\n")
	}
	return b.String()
}

func TestDefaultConfig(t *testing.T) {
	c := mustLoad(t, "")
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("the embedded config.yml does not validate:\n%s", joinErrs(errs))
	}
	if c.Log.Level != "info" || c.Log.Format != "text" {
		t.Errorf("log = %+v", c.Log)
	}
	if c.RTMP.Address != ":1935" || c.RTMP.HandshakeTimeout != 10*time.Second || c.RTMP.ReadTimeout != 10*time.Second ||
		c.RTMP.WriteTimeout != 10*time.Second {
		t.Errorf("rtmp = %+v", c.RTMP)
	}
	if c.HTTP.Address != ":8080" || c.HTTP.WriteTimeout != 10*time.Second {
		t.Errorf("http = %+v", c.HTTP)
	}
	if !samePathConfig(c.Paths.Default, server.DefaultPathConfig()) {
		t.Errorf("paths.default = %+v\nDefaultPathConfig() = %+v (config.yml and the code disagree)", c.Paths.Default, server.DefaultPathConfig())
	}
	if len(c.Paths.Overrides) != 0 {
		t.Errorf("overrides = %+v", c.Paths.Overrides)
	}
	if got := c.PathConfig("live/test"); !samePathConfig(got, server.DefaultPathConfig()) {
		t.Errorf("PathConfig = %+v", got)
	}
	// An empty file is no change.
	c = mustLoad(t, "\n# nothing\n")
	if errs := c.Validate(); len(errs) > 0 || c.RTMP.Address != ":1935" {
		t.Errorf("empty file: %v %+v", errs, c.RTMP)
	}
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	c := mustLoad(t, "rtmp:\n  address: \"127.0.0.1:1936\"\npaths:\n  default:\n    gopCache:\n      maxBytes: 1MiB\n")
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatal(joinErrs(errs))
	}
	if c.RTMP.Address != "127.0.0.1:1936" || c.RTMP.ReadTimeout != 10*time.Second || c.HTTP.Address != ":8080" {
		t.Errorf("rtmp %+v http %+v", c.RTMP, c.HTTP)
	}
	if c.Paths.Default.GOPCache.MaxBytes != 1<<20 || c.Paths.Default.GOPCache.MaxFrames != 1200 || c.Paths.Default.Join != "cache" {
		t.Errorf("paths.default %+v", c.Paths.Default)
	}
}

func TestUnknownKey(t *testing.T) {
	for _, tc := range []struct {
		yml, key, line string
	}{
		{"log:\n  level: info\n  colour: red\n", "colour", "line 3"},
		{"rtmp:\n  adress: \":1\"\n", "adress", "line 2"},
		{"paths:\n  default:\n    join: live\n    gopcache:\n      maxFrames: 3\n", "gopcache", "line 4"},
		{"paths:\n  overrides:\n    - match: \"a/*\"\n      publishkey: x\n", "publishkey", "line 4"},
		{"srt:\n  adress: \":8890\"\n", "adress", "line 2"},
		{"hls:\n  address: \":8890\"\n", "address", "line 2"},
		{"webrtc:\n  address: \":8890\"\n", "address", "line 2"},
		{"whip:\n  address: \":8890\"\n", "whip", "line 1"},
	} {
		_, err := loadConfig([]byte(tc.yml))
		if err == nil {
			t.Errorf("%q: no error", tc.yml)
			continue
		}
		if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.line) {
			t.Errorf("%q: error %q does not name %q and %q", tc.yml, err, tc.key, tc.line)
		}
	}
}

func TestBadValues(t *testing.T) {
	for _, tc := range []struct {
		yml, key, hint string
	}{
		{"paths:\n  default:\n    join: sometimes\n", "paths.default.join", "cache"},
		{"log:\n  level: verbose\n", "log.level", "debug"},
		{"log:\n  format: xml\n", "log.format", "json"},
		{"rtmp:\n  address: \"1935\"\n", "rtmp.address", "PORT"},
		{"http:\n  address: \"8080\"\n", "http.address", "PORT"},
		{"rtmp:\n  writeTimeout: 1ms\n", "rtmp.writeTimeout", "100ms"},
		{"paths:\n  overrides:\n    - match: \"~([\"\n", "paths.overrides[0].match", "regular expression"},
		{"paths:\n  overrides:\n    - match: \"[\"\n", "paths.overrides[0].match", "glob"},
		{"paths:\n  overrides:\n    - match: \"\"\n", "paths.overrides[0].match", "live/*"},
		{"paths:\n  overrides:\n    - match: \"a/*\"\n    - match: \"b/*\"\n      readerQueue: 3\n", "paths.overrides[1].readerQueue", "16"},
		{"paths:\n  default:\n    publishKey: \"a b\"\n", "paths.default.publishKey", "spaces"},
		{"paths:\n  default:\n    gopCache:\n      maxBytes: 1KiB\n", "paths.default.gopCache.maxBytes", "64KiB"},
		{"rtsp:\n  transports: [tcp, smoke]\n", "rtsp.transports", "multicast"},
		{"rtsp:\n  transports: []\n", "rtsp.transports", "at least one"},
		{"rtsp:\n  udpRTPAddress: \":8001\"\n  udpRTCPAddress: \":8002\"\n", "rtsp.udpRTPAddress", "even"},
		{"rtsp:\n  multicastIPRange: \"10.0.0.0/8\"\n", "rtsp.multicastIPRange", "224.1.0.0/16"},
		{"rtsp:\n  writeQueueSize: 1000\n", "rtsp.writeQueueSize", "power of two"},
		{"rtsp:\n  readTimeout: 0s\n", "rtsp.readTimeout", "100ms"},
		{"srt:\n  latency: 1ms\n", "srt.latency", "20ms"},
		{"hls:\n  partTarget: 10ms\n", "hls.partTarget", "50ms"},
		{"hls:\n  segmentMin: 100ms\n", "hls.segmentMin", "partTarget"},
		{"hls:\n  window: 1\n", "hls.window", "3"},
		{"hls:\n  partHoldBack: 1.5\n", "hls.partHoldBack", "at least twice PART-TARGET"},
		{"http:\n  tlsCert: a.pem\n", "http.tlsCert", "both"},
		{"tls:\n  cert: a.pem\n", "tls.cert", "tls.key"},
		{"tls:\n  cert: a.pem\n  key: a.key\nhttp:\n  tlsCert: b.pem\n  tlsKey: b.key\n", "http.tlsCert", "tls:"},
		{"tls:\n  cert: a.pem\n  key: a.key\n  acme:\n    domains: [a.example.com]\n", "tls.acme.domains", "not both"},
		{"tls:\n  acme:\n    domains: [localhost]\n", "tls.acme.domains[0]", "with a dot"},
		{"tls:\n  acme:\n    domains: [\"*.example.com\"]\n", "tls.acme.domains[0]", "wildcard"},
		{"tls:\n  acme:\n    domains: [127.0.0.1]\n", "tls.acme.domains[0]", "DNS name"},
		{"tls:\n  acme:\n    domains: [a.example.com]\n    directoryURL: ftp://x\n", "tls.acme.directoryURL", "https://"},
		{"tls:\n  acme:\n    domains: [a.example.com]\n    cacheDir: \"\"\n", "tls.acme.cacheDir", "directory"},
		{"tls:\n  acme:\n    domains: [a.example.com]\n    email: nobody\n", "tls.acme.email", "email"},
		{"tls:\n  acme:\n    renewBefore: 2000h\n", "tls.acme.renewBefore", "720h"},
		{"rtmp:\n  tlsAddress: \":1936\"\n", "rtmp.tlsAddress", "tls.cert"},
		{"tls:\n  cert: a.pem\n  key: a.key\nrtmp:\n  tlsAddress: \"1936\"\n", "rtmp.tlsAddress", "PORT"},
		{"rtsp:\n  tlsAddress: \":8322\"\n", "rtsp.tlsAddress", "tls.cert"},
		{"tls:\n  cert: a.pem\n  key: a.key\nrtsp:\n  tlsAddress: \":8322\"\n  transports: [udp]\n", "rtsp.tlsAddress", "tcp"},
		{"srt:\n  address: \"8890\"\n", "srt.address", "PORT"},
		{"http:\n  idleTimeout: 0s\n", "http.idleTimeout", "1s"},
		{"http:\n  readTimeout: 5s\n", "http.readTimeout", "hls.blockTimeout"},
		{"auth:\n  failureBudget: -1\n", "auth.failureBudget", "no limit"},
		{"limits:\n  maxConnsPerAddress: -5\n", "limits.maxConnsPerAddress", "no cap"},
		{"paths:\n  default:\n    srtPublishPassphrase: short\n", "paths.default.srtPublishPassphrase", "10 to 79"},
		{"paths:\n  default:\n    source: \"rtsp://cam/x\"\n", "paths.default.source", "override"},
		{"paths:\n  overrides:\n    - match: \"cam/*\"\n      source: \"rtsp://cam/x\"\n", "paths.overrides[0].source", "one path"},
		{"paths:\n  overrides:\n    - match: \"cam\"\n      source: \"http://cam/x\"\n", "paths.overrides[0].source", "rtsp://"},
		{"paths:\n  overrides:\n    - match: \"cam\"\n      source: \"rtsp://u:p@cam/x\"\n      sourceTransport: quic\n", "paths.overrides[0].sourceTransport", "auto"},
		{"paths:\n  default:\n    readKey: \"a@b\"\n", "paths.default.readKey", "password"},
		{"paths:\n  overrides:\n    - match: \"cam*\"\n    - match: \"cam1\"\n      source: \"rtsp://c/x\"\n", "paths.overrides[1].source", "never used"},
		{"paths:\n  default:\n    rewindWindow: -1s\n", "paths.default.rewindWindow", "24h"},
		{"record:\n  directory: \"\"\n", "record.directory", "recordings"},
		{"record:\n  pathFormat: \"../%path/%Y-%m-%d_%H-%M-%S\"\n", "record.pathFormat", ".."},
		{"record:\n  pathFormat: \"%Y-%m-%d\"\n", "record.pathFormat", "%path"},
		{"record:\n  fragmentDuration: 1ms\n", "record.fragmentDuration", "200ms"},
		{"record:\n  diskBudget: 1KiB\n", "record.diskBudget", "16MiB"},
		{"record:\n  onSegmentComplete:\n    url: ftp://x\n", "record.onSegmentComplete.url", "http://"},
		{"streams:\n  database: \"postgres://u:pw@db:notaport/x\"\n", "streams.database", "not a valid PostgreSQL URL"},
		{"streams:\n  databaseTimeout: 10ms\n", "streams.databaseTimeout", "100ms"},
	} {
		c, err := loadConfig([]byte(tc.yml))
		if err != nil {
			t.Errorf("%q: loadConfig: %v", tc.yml, err)
			continue
		}
		errs := c.Validate()
		if len(errs) != 1 {
			t.Errorf("%q: %d errors, want 1:\n%s", tc.yml, len(errs), joinErrs(errs))
			continue
		}
		if msg := errs[0].Error(); !strings.HasPrefix(msg, tc.key+":") || !strings.Contains(msg, tc.hint) {
			t.Errorf("%q: error %q does not start with %q or lacks %q", tc.yml, msg, tc.key, tc.hint)
		}
	}

	// A bad size names its line and says what would work.
	if _, err := loadConfig([]byte("paths:\n  default:\n    gopCache:\n      maxBytes: lots\n")); err == nil ||
		!strings.Contains(err.Error(), "32MiB") || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("bad size: %v", err)
	}
	// Type errors are decode errors that name the line.
	for _, yml := range []string{
		"rtmp:\n  readTimeout: soon\n",
		"paths:\n  default:\n    readerQueue: many\n",
	} {
		if _, err := loadConfig([]byte(yml)); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("%q: error %v does not name a line", yml, err)
		}
	}
}

func TestOverrides(t *testing.T) {
	c := mustLoad(t, `
paths:
  default:
    join: live
    gracePeriod: 2s
  overrides:
    - match: "private/*"
      publishKey: secret
      maxReaders: 3
    - match: "~^cam[0-9]+$"
      gracePeriod: 0s
    - match: "private/x"
      join: cache
`)
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatal(joinErrs(errs))
	}
	def := server.DefaultPathConfig()
	def.Join, def.GracePeriod = "live", 2*time.Second

	priv := def
	priv.PublishKey, priv.MaxReaders = "secret", 3
	cam := def
	cam.GracePeriod = 0
	for _, tc := range []struct {
		path string
		want server.PathConfig
	}{
		{"private/a", priv},
		{"private/x", priv}, // the first match wins, not the most specific
		{"private/a/b", def},
		{"cam12", cam},
		{"cam", def},
		{"xcam1", def},
		{"live/test", def},
	} {
		if got := c.PathConfig(tc.path); !samePathConfig(got, tc.want) {
			t.Errorf("PathConfig(%q) =\n %+v\nwant\n %+v", tc.path, got, tc.want)
		}
	}
	// The override itself records only its pattern and what it gives.
	if c.Paths.Overrides[0].Match != "private/*" {
		t.Errorf("override 0 = %+v", c.Paths.Overrides[0])
	}
}

func TestReadConfigFile(t *testing.T) {
	if _, err := readConfigFile(""); err != nil {
		t.Fatalf("default: %v", err)
	}
	dir := t.TempDir()
	if _, err := readConfigFile(dir + "/missing.yml"); err == nil {
		t.Error("missing file: no error")
	}
}

// FuzzConfig feeds arbitrary YAML to loadConfig and Validate: no panic, and
// a config that validates gives a PathConfig for any path.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(""))
	f.Add(defaultConfigYAML)
	f.Add([]byte("paths:\n  overrides:\n    - match: \"~([\"\n"))
	f.Add([]byte("paths:\n  overrides:\n    - match: \"a/*\"\n      join: live\n    - *x\n"))
	f.Add([]byte("paths: &a\n  overrides: *a\n"))
	f.Add([]byte("log: {level: debug}\nrtmp: [1, 2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := loadConfig(data)
		if err != nil {
			return
		}
		if len(c.Validate()) == 0 {
			_ = c.PathConfig("live/test")
		}
	})
}

// samePathConfig compares two path configs, an empty list the same as none.
func samePathConfig(a, b server.PathConfig) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

// The transcode section and the per-path ladder: a rung path has its
// source's settings (keys included) and no ladder or pull of its own.
func TestTranscodeConfig(t *testing.T) {
	c := mustLoad(t, `
transcode:
  ladder:
    - {name: 480p, height: 480, videoBitrate: 1200k}
    - {name: 240p, height: 240, videoBitrate: 400k, encoder: h264_nvenc}
paths:
  overrides:
    - match: "private/*"
      readKey: "k1"
      ladder: [240p]
    - match: "cam1"
      source: "rtsp://cam/x"
      transcode: always
    - match: "plain/*"
      transcode: "off"
`)
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("%s", joinErrs(errs))
	}
	if r := c.Transcode.Ladder[1]; r.Preset != "p4" || r.AudioBitrate != 128000 {
		t.Errorf("defaults not filled in: %+v", r)
	}
	if p := c.LadderPlan("live/x"); p.Mode != server.TranscodeOnDemand || len(p.Rungs) != 2 {
		t.Errorf("live/x plan %+v", p)
	}
	if p := c.LadderPlan("private/x"); len(p.Rungs) != 1 || p.Rungs[0].Name != "240p" {
		t.Errorf("private/x plan %+v", p)
	}
	if p := c.LadderPlan("plain/x"); p.Mode != server.TranscodeOff || p.Rungs != nil {
		t.Errorf("plain/x plan %+v", p)
	}
	if p := c.LadderPlan("private/x/240p"); p.Mode != server.TranscodeOff {
		t.Errorf("a rung has a ladder of its own: %+v", p)
	}
	if pc := c.PathConfig("private/x/240p"); pc.ReadKey != "k1" || pc.Transcode != server.TranscodeOff || pc.RungOf != "private/x" {
		t.Errorf("a rung of private/x: %+v, want the source's read key and no ladder", pc)
	}
	// The audio job's Opus companion is the source's, like a rung (its
	// read key; no network publisher while the source is live).
	if pc := c.PathConfig("private/x/webrtc"); pc.ReadKey != "k1" || pc.RungOf != "private/x" {
		t.Errorf("the Opus companion of private/x: %+v, want the source's read key", pc)
	}
	// Any <height>p may be a rendition the publisher sends itself (OBS
	// multitrack): it is the source's, read key included, whatever the
	// ladder; another name is not.
	if pc := c.PathConfig("private/x/480p"); pc.ReadKey != "k1" || pc.RungOf != "private/x" || pc.Transcode != server.TranscodeOff {
		t.Errorf("private/x/480p (a publisher's own rendition) did not get the source's settings: %+v", pc)
	}
	if pc := c.PathConfig("private/x/cam"); pc.ReadKey != "" || pc.RungOf != "" {
		t.Errorf("private/x/cam is no rung of private/x but got its settings: %+v", pc)
	}
	if pc := c.PathConfig("cam1/480p"); pc.Source != "" || pc.Transcode != server.TranscodeOff {
		t.Errorf("a rung of a pulled path pulls too: %+v", pc)
	}
	for _, tc := range []struct{ yaml, key string }{
		{"paths:\n  default:\n    ladder: [999p]\n", "paths.default.ladder"},
		{"paths:\n  default:\n    transcode: sometimes\n", "paths.default.transcode"},
		{"transcode:\n  ladder:\n    - {name: x, height: 7, videoBitrate: 1M}\n", "transcode.ladder[0].height"},
		{"transcode:\n  idleTimeout: 0s\n", "transcode.idleTimeout"},
		{"transcode:\n  maxWorkers: -1\n", "transcode.maxWorkers"},
	} {
		errs := mustLoad(t, tc.yaml).Validate()
		if len(errs) == 0 || !strings.Contains(joinErrs(errs), tc.key+":") {
			t.Errorf("%q: %v, want an error naming %s", tc.yaml, errs, tc.key)
		}
	}
}

func TestWebConfig(t *testing.T) {
	c := mustLoad(t, "web:\n  chatHistory: 0\n  chatRateWindow: 0s\n")
	errs := joinErrs(c.Validate())
	for _, want := range []string{"web.chatHistory: must be 1 to 10000", "web.chatRateWindow: must be more than 0"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors %q lack %q", errs, want)
		}
	}
	if w := mustLoad(t, "").WebServerConfig(); w.ChatHistory != 50 || w.ChatRate != 5 || w.ChatMaxBytes != 500 {
		t.Errorf("defaults %+v", w)
	}
}

// docs/configuration.md is config.yml's comments as tables: it cannot
// drift, because this fails when it differs (regenerate it with
// `go run . config reference > docs/configuration.md`).
func TestConfigReference(t *testing.T) {
	want, err := configReference(defaultConfigYAML)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/configuration.md differs from config.yml: run `go run . config reference > docs/configuration.md`")
	}
	for _, key := range []string{"`rtmp.address`", "`paths.default.gracePeriod`", "`limits.maxConnsPerAddress`", "`http.idleTimeout`"} {
		if !strings.Contains(want, key) {
			t.Errorf("the reference lacks %s", key)
		}
	}
}

// An empty address switches that listener off.
func TestListenerOff(t *testing.T) {
	c := mustLoad(t, "rtmp:\n  address: \"\"\nsrt:\n  address: \"\"\n")
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("empty addresses refused: %v", errs)
	}
}

func TestRecordingConfig(t *testing.T) {
	c, err := loadConfig(nil)
	if err != nil || len(c.Validate()) > 0 {
		t.Fatal(err, c.Validate())
	}
	if c.Recording() || c.PathConfig("live/x").Record || c.PathConfig("live/x").RewindWindow != 30*time.Minute {
		t.Fatal("recording is on by default")
	}
	c, err = loadConfig([]byte("paths:\n  overrides:\n    - match: \"live/*\"\n      record: true\n"))
	if err != nil || len(c.Validate()) > 0 {
		t.Fatal(err, c.Validate())
	}
	if !c.Recording() || !c.PathConfig("live/x").Record || c.PathConfig("other").Record {
		t.Fatal("the override does not record live/*")
	}
	if !c.PathConfig("live/x/480p").Record || c.PathConfig("live/x/webrtc").Record {
		t.Fatal("a rung records like its source; the WebRTC audio companion does not")
	}
}
