package transcode

import (
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamhub/streamhub/media"
)

func TestParseBitrate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Bitrate
		ok   bool
	}{
		{"4500k", 4500000, true}, {"2.5M", 2500000, true}, {"800000", 800000, true}, {" 96K ", 96000, true},
		{"", 0, false}, {"fast", 0, false}, {"-1k", 0, false}, {"1kb", 0, false}, {"1e6", 0, false},
	} {
		got, err := ParseBitrate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseBitrate(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	var r Rung
	if err := yaml.Unmarshal([]byte("videoBitrate: 2.5M\naudioBitrate: 96000\n"), &r); err != nil || r.VideoBitrate != 2500000 || r.AudioBitrate != 96000 {
		t.Fatalf("yaml: %+v %v", r, err)
	}
	if err := yaml.Unmarshal([]byte("videoBitrate: lots\n"), &r); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a bad bitrate: %v, want an error naming the line", err)
	}
	if s := Bitrate(2500000).String(); s != "2500k" {
		t.Fatalf("String = %q", s)
	}
}

func validConfig() Config {
	c := Config{FFmpeg: "ffmpeg", IdleTimeout: 30 * time.Second, Watchdog: 10 * time.Second,
		Ladder: []Rung{{Name: "480p", Height: 480, VideoBitrate: 1200e3}, {Name: "240p", Height: 240, VideoBitrate: 400e3, AudioBitrate: 64e3}}}
	c.Normalize()
	return c
}

func TestValidate(t *testing.T) {
	c := validConfig()
	if errs := c.Validate("transcode"); len(errs) > 0 {
		t.Fatalf("valid config: %v", errs)
	}
	if r := c.Ladder[0]; r.Encoder != EncoderX264 || r.Preset != "veryfast" || r.AudioBitrate != 128e3 {
		t.Fatalf("Normalize: %+v", r)
	}
	if r := c.Ladder[0]; r.Bandwidth() != 1320e3+128e3 || r.AverageBandwidth() != 1200e3+128e3 {
		t.Fatalf("bandwidth %d / %d", r.Bandwidth(), r.AverageBandwidth())
	}
	for _, tc := range []struct {
		key    string
		change func(*Config)
	}{
		{"transcode.ffmpeg", func(c *Config) { c.FFmpeg = " " }},
		{"transcode.threads", func(c *Config) { c.Threads = -1 }},
		{"transcode.idleTimeout", func(c *Config) { c.IdleTimeout = 0 }},
		{"transcode.watchdog", func(c *Config) { c.Watchdog = time.Second }},
		{"transcode.ladder[1].name", func(c *Config) { c.Ladder[1].Name = "480p" }},
		{"transcode.ladder[0].name", func(c *Config) { c.Ladder[0].Name = "../x" }},
		{"transcode.ladder[0].name", func(c *Config) { c.Ladder[0].Name = "index" }},
		{"transcode.ladder[0].height", func(c *Config) { c.Ladder[0].Height = 481 }},
		{"transcode.ladder[0].videoBitrate", func(c *Config) { c.Ladder[0].VideoBitrate = 10 }},
		{"transcode.ladder[0].maxrate", func(c *Config) { c.Ladder[0].MaxRate = 1000 }},
		{"transcode.ladder[0].audioBitrate", func(c *Config) { c.Ladder[0].AudioBitrate = 1 }},
		{"transcode.ladder[0].encoder", func(c *Config) { c.Ladder[0].Encoder = "x265" }},
		{"transcode.ladder[0].preset", func(c *Config) { c.Ladder[0].Preset = "very fast" }},
	} {
		c := validConfig()
		c.Ladder = slices.Clone(c.Ladder)
		tc.change(&c)
		errs := c.Validate("transcode")
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tc.key+":") {
			t.Errorf("%s: got %v, want one error naming it", tc.key, errs)
		}
	}
}

func TestRungsBelow(t *testing.T) {
	rungs := validConfig().Ladder
	names := func(rs []Rung) (out []string) {
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	for _, tc := range []struct {
		tracks []*media.Track
		want   []string
	}{
		{[]*media.Track{{Codec: media.CodecAAC}, {Codec: media.CodecH264, Height: 720}}, []string{"480p", "240p"}},
		{[]*media.Track{{Codec: media.CodecH265, Height: 480}}, []string{"240p"}}, // at the source's height: skipped
		{[]*media.Track{{Codec: media.CodecH264, Height: 240}}, nil},
		{[]*media.Track{{Codec: media.CodecH264}}, nil},                    // height unknown
		{[]*media.Track{{Codec: media.CodecAV1, Height: 1080}}, nil},       // no AV1 in MPEG-TS
		{[]*media.Track{{Codec: media.CodecOpus, SampleRate: 48000}}, nil}, // audio only
	} {
		if got := names(rungsBelow(rungs, tc.tracks)); !slices.Equal(got, tc.want) {
			t.Errorf("rungsBelow(%v) = %v, want %v", tc.tracks[0].Codec, got, tc.want)
		}
	}
}

func TestArgs(t *testing.T) {
	c := validConfig()
	c.Threads = 2
	a := Args(c, c.Ladder, Input{HasAudio: true})
	joined := strings.Join(a, " ")
	for _, want := range []string{
		"-nostdin", "-protocol_whitelist pipe", "-copyts -f mpegts -i pipe:0",
		"-filter_complex [0:v:0]split=2[s0][s1];[s0]scale=-2:480,format=yuv420p[v0];[s1]scale=-2:240,format=yuv420p[v1]",
		"-map [v0] -map 0:a:0 -c:v libx264 -preset veryfast", "-map [v1] -map 0:a:0",
		"-b:v 1200k -maxrate 1320k -bufsize 2400k", "-b:v 400k -maxrate 440k -bufsize 800k",
		"-c:a aac -b:a 128k", "-c:a aac -b:a 64k", "-threads 2", "-filter_complex_threads 2",
		"-muxdelay 0", "-enc_time_base 1:90000", "pipe:3", "pipe:4",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("argv lacks %q:\n%s", want, joined)
		}
	}
	if n := strings.Count(joined, "-force_key_frames source"); n != 2 {
		t.Errorf("-force_key_frames source %d times, want once per rung", n)
	}
	if n := strings.Count(joined, "-sc_threshold 0"); n != 2 {
		t.Errorf("-sc_threshold 0 %d times, want once per rung", n)
	}
	a = Args(validConfig(), c.Ladder[1:], Input{})
	joined = strings.Join(a, " ")
	if strings.Contains(joined, "0:a") || strings.Contains(joined, "-c:a") || strings.Contains(joined, "-threads") {
		t.Errorf("no audio and no thread limit, yet: %s", joined)
	}
	c.VAAPIDevice = "/dev/dri/renderD128"
	c.Ladder[0].Encoder = EncoderVAAPI
	joined = strings.Join(Args(c, c.Ladder, Input{}), " ")
	if !strings.Contains(joined, "-vaapi_device /dev/dri/renderD128") || !strings.Contains(joined, "format=nv12,hwupload[v0]") {
		t.Errorf("vaapi: %s", joined)
	}
}

func TestWallClock(t *testing.T) {
	var c wallClock
	if _, ok := c.at(time.Second); ok {
		t.Fatal("an empty clock knows a time")
	}
	t0 := time.Unix(1000, 0)
	for i := range wallClockSize + 10 {
		c.add(time.Duration(i)*40*time.Millisecond, t0.Add(time.Duration(i)*40*time.Millisecond+5*time.Millisecond))
	}
	got, ok := c.at(500*40*time.Millisecond + 10*time.Millisecond)
	if want := t0.Add(500*40*time.Millisecond + 15*time.Millisecond); !ok || !got.Equal(want) {
		t.Fatalf("at = %v %v, want %v", got, ok, want)
	}
	if _, ok := c.at(5 * 40 * time.Millisecond); ok {
		t.Fatal("a time older than the ring is known")
	}
}
