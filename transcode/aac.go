package transcode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/internal/tsconv"
	"github.com/streamhub/streamhub/media"
)

// The AAC encoder is the audio job in reverse: a WebRTC publisher's Opus
// made AAC for the players that cannot take Opus (HTTP-FLV and RTMP
// players, Safari's HLS, most RTSP players). It is not a derived stream:
// the publisher declares an AAC track beside its Opus one and the encoder
// writes into it, so every protocol's reader finds both in the one stream
// and takes the first audio track it carries (AAC comes first).

// AACConfig is the AudioSpecificConfig of what the encoder makes: AAC-LC,
// 48 kHz, stereo. A publisher declares its AAC track with it.
var AACConfig = []byte{0x11, 0x90}

// aacQueue is how many Opus packets (20 ms each) may wait for FFmpeg; when
// it is full, packets are dropped (and counted) rather than block the
// publisher.
const aacQueue = 256

// AACEncoder runs one FFmpeg that turns the Opus fed to it into AAC units
// of its output track, restarted with backoff when it fails, killed by its
// watchdog when it takes input and gives nothing, and with the server.
type AACEncoder struct {
	m     *Manager
	log   *slog.Logger
	in    *media.Track // the Opus track as FFmpeg gets it (ID 0)
	out   *media.Track
	write func(*media.Unit)

	queue   chan opusPacket
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	dropped atomic.Int64
}

type opusPacket struct {
	pts     time.Duration
	payload []byte
}

// NewAACEncoder starts an encoder for the stream at path whose Opus track is
// in; each AAC unit it makes goes to write with Track out (declared with
// AACConfig), its timestamps those of the Opus it came from. It fails when
// FFmpeg is missing. Close ends it.
func (m *Manager) NewAACEncoder(path string, in, out *media.Track, write func(*media.Unit)) (*AACEncoder, error) {
	if m.offErr != nil {
		return nil, m.offErr
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &AACEncoder{m: m, log: m.log.With("path", path, "job", "opus→aac"),
		in:  &media.Track{ID: 0, Codec: media.CodecOpus, SampleRate: 48000, Channels: max(in.Channels, 1)},
		out: out, write: write, queue: make(chan opusPacket, aacQueue), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go e.run()
	return e, nil
}

// Feed hands one Opus unit to the encoder. It copies what it needs (the
// caller may hand u to the hub right after) and never blocks.
func (e *AACEncoder) Feed(u *media.Unit) {
	if len(u.Payload) == 0 {
		return
	}
	select {
	case e.queue <- opusPacket{pts: u.PTS, payload: u.Payload[0]}:
	default:
		e.dropped.Add(1)
	}
}

// Close stops the encoder and its FFmpeg, and waits for them.
func (e *AACEncoder) Close() {
	e.cancel()
	<-e.done
}

// run restarts FFmpeg with backoff (1 s doubling to 30 s) until Close.
func (e *AACEncoder) run() {
	defer close(e.done)
	backoff := time.Second
	for {
		start := time.Now()
		err := e.once()
		if e.ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = time.Second
		}
		e.log.Warn("FFmpeg ended; restarting", "cause", err.Error(), "in", backoff)
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// aacArgs are FFmpeg's arguments: Opus in MPEG-TS on stdin, AAC in MPEG-TS
// on fd 3, each frame its own PES (no grouping delay), timestamps kept.
func aacArgs(threads int) []string {
	a := []string{"-hide_banner", "-nostats", "-loglevel", "error", "-nostdin"}
	if threads > 0 {
		a = append(a, "-threads", fmt.Sprint(threads))
	}
	return append(a, "-fflags", "+nobuffer", "-protocol_whitelist", "pipe", "-analyzeduration", "100000", "-probesize", "32768",
		"-copyts", "-f", "mpegts", "-i", "pipe:0",
		"-map", "0:a:0", "-c:a", "aac", "-profile:a", "aac_low", "-b:a", "128k", "-ar", "48000", "-ac", "2",
		"-f", "mpegts", "-pes_payload_size", "0", "-avoid_negative_ts", "disabled", "-muxdelay", "0", "-muxpreload", "0",
		"-flush_packets", "1", "-protocol_whitelist", "pipe", "pipe:3")
}

// once runs one FFmpeg until it exits, the watchdog ends it or Close.
func (e *AACEncoder) once() (err error) {
	defer guard.RecoverErr(e.log, "aac encoder", &err)
	// What queued while FFmpeg was down (up to 5 s in a backoff) is stale:
	// it would reach the players seconds behind the picture.
	for drained := false; !drained; {
		select {
		case <-e.queue:
		default:
			drained = true
		}
	}
	mux, err := tsconv.NewMuxer([]*media.Track{e.in})
	if err != nil {
		return err
	}
	p, err := startProcess(e.m.ffmpeg, aacArgs(e.m.cfg().Threads), 1)
	if err != nil {
		return err
	}
	e.log.Info("FFmpeg started", "pid", p.cmd.Process.Pid)
	var (
		wg      sync.WaitGroup
		lastOut atomic.Int64
		lastIn  atomic.Int64
		baseSet = make(chan struct{})
		base    time.Duration
		stderr  []string
		errMu   sync.Mutex
	)
	now := time.Now().UnixNano()
	lastOut.Store(now)
	lastIn.Store(now)
	ctx, stop := context.WithCancel(e.ctx)
	defer stop()
	wg.Add(3)
	go func() {
		defer wg.Done()
		keepStderr(p.stderr, func(line string) {
			errMu.Lock()
			stderr = lastLines(append(stderr, line), stderrLines)
			errMu.Unlock()
		})
	}()
	go func() { // FFmpeg's AAC → the output track
		defer wg.Done()
		defer guard.Recover(e.log, "aac encoder output")
		defer stop()
		e.readOut(ctx, p, &lastOut, baseSet, &base)
	}()
	feedErr := make(chan error, 1)
	go func() { // the Opus → FFmpeg
		defer wg.Done()
		feedErr <- func() (err error) {
			defer guard.RecoverErr(e.log, "aac encoder feed", &err)
			first := true
			for {
				var pk opusPacket
				select {
				case <-ctx.Done():
					return nil
				case pk = <-e.queue:
				}
				u := &media.Unit{Track: e.in, PTS: pk.pts, DTS: pk.pts, Payload: [][]byte{pk.payload}}
				b, err := mux.Mux(u, func() []*media.Track { return []*media.Track{e.in} })
				if err != nil || len(b) == 0 {
					continue
				}
				if first {
					base = pk.pts
					close(baseSet)
					first = false
				}
				lastIn.Store(-time.Now().UnixNano())
				if _, err := p.stdin.Write(b); err != nil {
					return err
				}
				lastIn.Store(time.Now().UnixNano())
			}
		}()
	}()
	exitErr := make(chan error, 1)
	go func() { exitErr <- p.cmd.Wait() }()
	watchdog := time.NewTicker(time.Second)
	defer watchdog.Stop()
	var result error
	exited := false
loop:
	for {
		select {
		case err := <-exitErr:
			exited, result = true, exitError(err)
			break loop
		case err := <-feedErr:
			result = err
			if result == nil {
				result = errors.New("transcode: the output ended")
			}
			break loop
		case <-ctx.Done():
			break loop
		case <-watchdog.C:
			if err := starved(&lastIn, &lastOut, e.m.cfg().Watchdog); err != nil {
				result = err
				p.kill()
				break loop
			}
		}
	}
	stop()
	p.closeStdin()
	if !exited {
		// Nothing worth flushing: a few ms of audio. Do not make the
		// publisher's end (or the server's shutdown) wait for FFmpeg.
		p.kill()
		<-exitErr
	}
	p.closeOuts()
	wg.Wait()
	p.stderr.Close()
	if result == nil {
		result = errors.New("transcode: FFmpeg exited")
	}
	errMu.Lock()
	defer errMu.Unlock()
	if len(stderr) > 0 {
		result = fmt.Errorf("%w: %s", result, stderr[len(stderr)-1])
	}
	return result
}

// readOut demuxes FFmpeg's output and writes its AAC as units of e.out.
func (e *AACEncoder) readOut(ctx context.Context, p *process, lastOut *atomic.Int64, baseSet chan struct{}, base *time.Duration) {
	out := p.outs[0]
	defer io.Copy(io.Discard, out) //nolint:errcheck // FFmpeg must never block on its output
	tr := &mpegts.Reader{R: &activityReader{r: out, last: lastOut}}
	if err := tr.Initialize(); err != nil {
		return
	}
	tr.OnDecodeError(func(error) {})
	in, err := tsconv.NewIngest(tr, func(error) {})
	if err != nil {
		e.log.Warn("FFmpeg's output unreadable", "cause", err.Error())
		return
	}
	select {
	case <-baseSet:
		in.SetTimeBase(*base)
	case <-ctx.Done():
		return
	}
	in.SetWriter(aacWriter{e})
	for ctx.Err() == nil && tr.Read() == nil {
	}
}

// aacWriter moves the units FFmpeg made onto the encoder's output track.
type aacWriter struct{ e *AACEncoder }

func (w aacWriter) Write(u *media.Unit) {
	if u.Track.Codec != media.CodecAAC {
		return
	}
	u.Track = w.e.out
	w.e.write(u)
}

func (aacWriter) UpdateTrack(*media.Track) {}
