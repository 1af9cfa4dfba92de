package rtsp

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/conn"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/streamhub/streamhub/media"
)

// A TCP player gets, on the channels it asked for, the PLAY answer first,
// then every track's packets in order with the SSRC of its SETUP answer
// and sender reports on the channel after; an answer to a keepalive sent
// meanwhile arrives whole between frames.
func TestPlayTCPFramesInOrderWithReports(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/il"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/il")

	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := conn.NewConn(bufio.NewReader(nc), nc)
	cseq := 0
	request := func(method base.Method, url string, h base.Header) {
		t.Helper()
		cseq++
		u, err := base.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			h = base.Header{}
		}
		h["CSeq"] = base.HeaderValue{strconv.Itoa(cseq)}
		if err := c.WriteRequest(&base.Request{Method: method, URL: u, Header: h}); err != nil {
			t.Fatal(err)
		}
	}
	answer := func(what string) *base.Response {
		t.Helper()
		res, err := c.ReadResponse()
		if err != nil || res.StatusCode != base.StatusOK {
			t.Fatalf("%s: %v %v", what, res, err)
		}
		return res
	}
	url := e.url("live/il")
	request(base.Describe, url, nil)
	answer("DESCRIBE")

	// Channels of our choosing, not gortsplib's first free pair.
	want := map[int]int{0: 6, 1: 2} // trackID → RTP channel
	ssrc := map[int]uint32{}        // RTP channel → SSRC
	session := ""
	for _, id := range []int{0, 1} {
		h := base.Header{"Transport": base.HeaderValue{"RTP/AVP/TCP;unicast;interleaved=" +
			strconv.Itoa(want[id]) + "-" + strconv.Itoa(want[id]+1)}}
		if session != "" {
			h["Session"] = base.HeaderValue{session}
		}
		request(base.Setup, url+"/trackID="+strconv.Itoa(id), h)
		res := answer("SETUP")
		var th headers.Transport
		if err := th.Unmarshal(res.Header["Transport"]); err != nil || th.SSRC == nil || th.InterleavedIDs[0] != want[id] {
			t.Fatalf("SETUP answer transport %v: %v", res.Header["Transport"], err)
		}
		ssrc[want[id]] = *th.SSRC
		var sh headers.Session
		if err := sh.Unmarshal(res.Header["Session"]); err != nil {
			t.Fatal(err)
		}
		session = sh.Session
	}
	request(base.Play, url, base.Header{"Session": base.HeaderValue{session}})
	msg, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	if res, ok := msg.(*base.Response); !ok || res.StatusCode != base.StatusOK {
		t.Fatalf("first message after PLAY: %T %v, want the PLAY answer", msg, msg)
	}

	lastSeq := map[int]uint16{}
	pkts := map[int]int{}
	reports := map[int]int{}
	keepaliveAt, keepaliveAnswered := time.Now().Add(500*time.Millisecond), false
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		if !keepaliveAt.IsZero() && time.Now().After(keepaliveAt) {
			keepaliveAt = time.Time{}
			request(base.GetParameter, url, base.Header{"Session": base.HeaderValue{session}})
		}
		msg, err := c.Read()
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		switch m := msg.(type) {
		case *base.Response:
			if m.StatusCode != base.StatusOK || m.Header["CSeq"][0] != strconv.Itoa(cseq) {
				t.Fatalf("unexpected answer %v", m)
			}
			keepaliveAnswered = true
		case *base.InterleavedFrame:
			ch := m.Channel
			if _, ok := ssrc[ch]; ok {
				var p rtp.Packet
				if err := p.Unmarshal(m.Payload); err != nil {
					t.Fatalf("channel %d: %v", ch, err)
				}
				if p.SSRC != ssrc[ch] {
					t.Fatalf("channel %d: SSRC %x, SETUP said %x", ch, p.SSRC, ssrc[ch])
				}
				if pkts[ch] > 0 && p.SequenceNumber != lastSeq[ch]+1 {
					t.Fatalf("channel %d: sequence %d after %d", ch, p.SequenceNumber, lastSeq[ch])
				}
				lastSeq[ch] = p.SequenceNumber
				pkts[ch]++
				continue
			}
			if _, ok := ssrc[ch-1]; !ok {
				t.Fatalf("frame on channel %d, set up were %v", ch, want)
			}
			rs, err := rtcp.Unmarshal(m.Payload)
			if err != nil {
				t.Fatalf("channel %d: %v", ch, err)
			}
			for _, r := range rs {
				sr, ok := r.(*rtcp.SenderReport)
				if !ok || sr.SSRC != ssrc[ch-1] || sr.PacketCount == 0 || sr.PacketCount > uint32(pkts[ch-1]) {
					t.Fatalf("channel %d: %#v after %d packets", ch, r, pkts[ch-1])
				}
				reports[ch]++
			}
		}
	}
	for _, ch := range []int{6, 2} {
		if pkts[ch] < 20 || reports[ch+1] == 0 {
			t.Errorf("channel %d: %d packets, %d sender reports", ch, pkts[ch], reports[ch+1])
		}
	}
	if !keepaliveAnswered {
		t.Error("no answer to GET_PARAMETER")
	}
}

// BenchmarkInterleavedBatch is a TCP player's serialization of one batch:
// a 30 fps video frame of 8 packets and two AAC frames, framed around the
// shared payloads.
func BenchmarkInterleavedBatch(b *testing.B) {
	fx := loadFixture(b)
	tracks := []*media.Track{
		{ID: 0, Codec: media.CodecH264, SPS: fx.sps, PPS: fx.pps},
		{ID: 1, Codec: media.CodecAAC, SampleRate: 48000, Channels: 2},
	}
	cfg, _ := fx.aac.Marshal()
	tracks[1].AudioConfig = cfg
	o := &outStream{path: "bench", tracks: tracks, byID: make([]*trackOut, len(tracks))}
	for i, t := range tracks {
		to, err := newTrackOut(t)
		if err != nil {
			b.Fatal(err)
		}
		o.byID[i] = to
	}
	p := newPlayer(o, nil, nil)
	p.il = newInterleaved(nil, time.Second, []*trackDest{{channel: 0, ssrc: 1}, {channel: 2, ssrc: 2}}, nil)
	idr := make([]byte, 8*1400)
	batch := []*media.Unit{
		{Track: tracks[0], Payload: [][]byte{{0x65, 0x88}, idr}, KeyFrame: true, Wall: time.Now()},
		{Track: tracks[1], Payload: [][]byte{make([]byte, 300)}, Wall: time.Now()},
		{Track: tracks[1], Payload: [][]byte{make([]byte, 300)}, PTS: 21 * time.Millisecond, Wall: time.Now()},
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := p.send(ctx, batch, false); err != nil {
			b.Fatal(err)
		}
		p.il.addReports(time.Time{})
		clear(p.il.bufs)
		p.il.bufs, p.il.hdr, p.il.sent = p.il.bufs[:0], p.il.hdr[:0], 0
	}
}

// A TCP player that pauses and plays again gets packets again, after the
// second PLAY answer (the gate is armed anew).
func TestPlayTCPPauseAndResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/pause"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/pause")
	c := setupPlayer(t, e.url("live/pause"), gortsplib.ProtocolTCP)
	var got atomic.Int64
	c.OnPacketRTPAny(func(*description.Media, format.Format, *rtp.Packet) { got.Add(1) })
	waitPackets := func(what string) {
		t.Helper()
		from := got.Load()
		for end := time.Now().Add(5 * time.Second); got.Load() < from+20; {
			if time.Now().After(end) {
				t.Fatalf("%s: %d packets in 5 s", what, got.Load()-from)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	waitPackets("first PLAY")
	if _, err := c.Pause(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	waitPackets("PLAY after PAUSE")
}
