package rtmp

import (
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// gortmplib's Reader finds a publisher's tracks by reading 2 s of its media
// (its analyzePeriod), which delayed every publish by 2 s: a publisher that
// reconnected within a short grace period came back too late for its
// viewers. probeConn ends that probe as soon as the tracks are known:
//
//   - with onMetaData, once a track of every kind it announces
//     (videocodecid, audiocodecid) has its sequence header (H264/H265
//     config, Enhanced RTMP sequence start, AAC config; MP3 and Opus at
//     their first frame);
//   - without onMetaData, once both a video and an audio track are known;
//   - a video-only or audio-only publisher without onMetaData, or one with
//     several tracks of a kind (Enhanced RTMP multitrack), gets the full
//     probe as before.
//
// It ends the probe by handing gortmplib one made-up message dated 2 s
// after the first: an AAC config without a config, which creates no track.
// The messages read meanwhile are kept and replayed (replayConn), so the
// made-up one never reaches the reader after the probe.

// probeWindow is gortmplib's analyzePeriod: a message dated this long
// after the first ends its probe.
const probeWindow = 2 * time.Second

type probeConn struct {
	gortmplib.Conn

	read []message.Message // every message read, for the replay
	ids  trackIDs          // the track ids seen (multitrack.go); messages it drops are neither read nor replayed

	metadata, multitrack   bool
	wantVideo, wantAudio   bool
	haveVideo, haveAudio   bool
	audioSeqStart, started bool
	first                  time.Duration // DTS of the first media message
	ended                  bool
}

// Read returns the publisher's next message, or the made-up one that ends
// the probe once the tracks are known.
func (p *probeConn) Read() (message.Message, error) {
	if !p.ended && p.started && p.known() {
		p.ended = true
		return &message.Audio{ChunkStreamID: message.AudioChunkStreamID, MessageStreamID: libPlayStreamID,
			Codec: message.CodecMPEG4Audio, AACType: message.AudioAACTypeConfig, DTS: p.first + probeWindow}, nil
	}
	msg, err := p.Conn.Read()
	for err == nil && p.ids.video != nil && !p.ids.admit(msg) {
		msg, err = p.Conn.Read()
	}
	if err != nil {
		return nil, err
	}
	p.read = append(p.read, msg)
	p.note(msg)
	return msg, nil
}

// known reports whether the tracks are known well enough to end the probe.
func (p *probeConn) known() bool {
	switch {
	case p.multitrack:
		return false
	case p.metadata:
		return (p.wantVideo || p.wantAudio) && (!p.wantVideo || p.haveVideo) && (!p.wantAudio || p.haveAudio)
	default:
		return p.haveVideo && p.haveAudio
	}
}

// note learns from one message what the publisher has.
func (p *probeConn) note(msg message.Message) {
	media := func(dts time.Duration) {
		if !p.started {
			p.started, p.first = true, dts
		}
	}
	switch m := msg.(type) {
	case *message.DataAMF0:
		p.noteMetadata(m.Payload)
	case *message.Video:
		media(m.DTS)
		if m.Type == message.VideoTypeConfig && (m.Codec == message.CodecH264 || m.Codec == message.CodecH265) {
			p.haveVideo = true
		}
	case *message.VideoExSequenceStart:
		p.haveVideo = true
	case *message.VideoExCodedFrames:
		media(m.DTS)
	case *message.VideoExFramesX:
		media(m.DTS)
	case *message.Audio:
		media(m.DTS)
		if m.Codec != message.CodecMPEG4Audio || (m.AACType == message.AudioAACTypeConfig && m.AACConfig != nil) {
			p.haveAudio = true
		}
	case *message.AudioExSequenceStart:
		p.audioSeqStart = true
	case *message.AudioExCodedFrames:
		media(m.DTS)
		p.haveAudio = p.haveAudio || p.audioSeqStart
	case *message.VideoExMultitrack, *message.AudioExMultitrack:
		p.multitrack = true
	}
}

// noteMetadata reads the tracks an onMetaData announces.
func (p *probeConn) noteMetadata(d amf0.Data) {
	isMeta := false
	for _, v := range d {
		switch v := v.(type) {
		case string:
			isMeta = isMeta || v == "onMetaData"
		case amf0.Object:
			if isMeta {
				p.metadataFields(v)
			}
		case amf0.ECMAArray:
			if isMeta {
				p.metadataFields(amf0.Object(v))
			}
		}
	}
}

func (p *probeConn) metadataFields(o amf0.Object) {
	p.metadata = true
	if v, ok := o.GetFloat64("videocodecid"); ok && v != 0 {
		p.wantVideo = true
	} else if s, ok := o.GetString("videocodecid"); ok && s != "" {
		p.wantVideo = true // Enhanced RTMP may give a FourCC
	}
	if v, ok := o.GetFloat64("audiocodecid"); ok && v != 0 {
		p.wantAudio = true
	} else if s, ok := o.GetString("audiocodecid"); ok && s != "" {
		p.wantAudio = true
	}
	if _, ok := o.Get("videoTrackIdInfoMap"); ok {
		p.multitrack = true
	}
	if _, ok := o.Get("audioTrackIdInfoMap"); ok {
		p.multitrack = true
	}
}

// replayConn gives the reader the messages the probe read, then the
// publisher's (gortmplib's own replay would include the made-up message).
type replayConn struct {
	gortmplib.Conn
	queue []message.Message
}

func (r *replayConn) Read() (message.Message, error) {
	if len(r.queue) > 0 {
		m := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		return m, nil
	}
	return r.Conn.Read()
}
