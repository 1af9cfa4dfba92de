package server

import (
	"sync"
	"time"

	"github.com/streamhub/streamhub/media"
)

// The join plan: what a new reader gets before the live units of the
// ring. It is a pure function of the cached GOP and the path's settings
// (planJoin, table-tested); the Reader's cursor (NextBatch) only carries it
// out and then handles overruns, the lag bound and waiting.

// joinPlan is how a reader starts.
type joinPlan struct {
	// units go out first: the cached GOP, retimed for catch-up, with the
	// audio before its first picture dropped. They are shared (and never
	// modified): the caller copies the slice, not the units.
	units []*media.Unit
	// waitKey skips the ring until a video keyframe (a live join, or a
	// cache join with nothing cached).
	waitKey bool
	// floorOn drops the ring's audio older than audioFloor until audio at
	// or after it comes (see Reader.audioFloor).
	audioFloor time.Duration
	floorOn    bool
}

// planJoin returns the plan for a reader joining a stream whose cache
// holds gop (in write order) under the path's join mode and catch-up
// window (0: none). audioEarly sends the kept audio right after the first
// picture: a backlog of many squeezed pictures would otherwise keep the
// audio from a player that analyzes the start of the stream (ffmpeg stops
// analyzing after 5 s worth of pictures and finds no audio track).
func planJoin(gop []*media.Unit, hasVideo bool, join string, window time.Duration, audioEarly bool) joinPlan {
	if join == JoinLive {
		return joinPlan{waitKey: hasVideo}
	}
	if len(gop) == 0 {
		// Nothing cached (no keyframe yet, or the GOP overflowed the cache):
		// start at the next keyframe, as a live join does.
		return joinPlan{waitKey: hasVideo}
	}
	if window > 0 {
		all := gop
		gop = catchUp(gop, window)
		if audioEarly && len(gop) > 1 && gop[0].Track.IsVideo() {
			// The audio of the window before the newest audio unit, not
			// the newest picture: publishers that send audio late
			// (ffmpeg's MPEG-TS muxer packs ~370 ms per PES) have none in
			// the picture's window yet. It comes right after the first
			// picture, and no audio floor holds it back: an MPEG-TS
			// player starts its audio a moment before its pictures.
			return joinPlan{units: audioAfterFirst(gop, recentAudio(all, window))}
		}
	}
	var p joinPlan
	for _, u := range gop {
		if u.Track.IsVideo() {
			p.audioFloor, p.floorOn = u.DTS, true
			break
		}
	}
	if !p.floorOn {
		p.units = gop
		return p
	}
	kept := make([]*media.Unit, 0, len(gop))
	for _, u := range gop {
		if !u.Track.IsVideo() && u.DTS < p.audioFloor {
			continue
		}
		if !u.Track.IsVideo() {
			p.floorOn = false // audio at or after the picture: the floor is passed
		}
		kept = append(kept, u)
	}
	p.units = kept
	return p
}

// audioAfterFirst returns the video units of gop with audio put right
// after the first one.
func audioAfterFirst(gop, audio []*media.Unit) []*media.Unit {
	out := make([]*media.Unit, 0, len(gop)+len(audio))
	out = append(out, gop[0])
	out = append(out, audio...)
	for _, u := range gop[1:] {
		if u.Track.IsVideo() {
			out = append(out, u)
		}
	}
	return out
}

// recentAudio returns the audio units of gop within window of its newest
// audio unit, in order.
func recentAudio(gop []*media.Unit, window time.Duration) []*media.Unit {
	var newest time.Duration
	found := false
	for _, u := range gop {
		if !u.Track.IsVideo() {
			newest, found = u.DTS, true
		}
	}
	if !found {
		return nil
	}
	var out []*media.Unit
	for _, u := range gop {
		if !u.Track.IsVideo() && newest-u.DTS <= window {
			out = append(out, u)
		}
	}
	return out
}

// joinMemo keeps the last plan made for a stream, so that readers joining
// while the cache is unchanged (a join storm: hundreds within one frame
// interval) share one retimed GOP: its units, and so every format's
// serialization of them (Unit.Memo), are made once, not once per reader.
type joinMemo struct {
	mu   sync.Mutex // mu guards the fields below
	key  joinKey
	plan joinPlan
	ok   bool
}

// joinKey names the cache content a plan was made from: the ring head and
// the publish session at join time, and the catch-up window.
type joinKey struct {
	head, publishes uint64
	window, backlog time.Duration
}

// lookup returns the plan made for key, if it is the last one made.
func (m *joinMemo) lookup(key joinKey) (joinPlan, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.plan, m.ok && m.key == key
}

// store keeps plan as the one made for key.
func (m *joinMemo) store(key joinKey, plan joinPlan) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.key, m.plan, m.ok = key, plan, true
}

// catchUp retimes a cached GOP so that a player starting at its first unit
// plays through it within window and then runs at live delay. Video units
// older than the newest cached unit by more than window are squeezed
// (t -> newest - (newest-t)*window/span) in order, and audio units older than
// window are dropped, since squeezed audio is noise. The result holds fresh
// copies wherever a timestamp changed: cached units are shared and immutable.
func catchUp(gop []*media.Unit, window time.Duration) []*media.Unit {
	if len(gop) < 2 {
		return gop
	}
	// Anchor on the newest video unit: audio often arrives ahead of the
	// video (ffmpeg's RTSP publisher sends it in bursts), and squeezing
	// video up to a later audio time would put the last cached picture
	// after the next live one.
	newest := gop[len(gop)-1].DTS
	for i := len(gop) - 1; i >= 0; i-- {
		if gop[i].Track.IsVideo() {
			newest = gop[i].DTS
			break
		}
	}
	span := newest - gop[0].DTS
	if span <= window {
		return gop
	}
	squeeze := func(t time.Duration) time.Duration {
		if t >= newest {
			return t
		}
		return newest - time.Duration(float64(newest-t)*float64(window)/float64(span))
	}
	out := gop[:0:0]
	for _, u := range gop {
		if newest-u.DTS <= window && !u.Track.IsVideo() {
			out = append(out, u)
			continue
		}
		if !u.Track.IsVideo() {
			continue
		}
		orig := u
		if u.Orig != nil {
			orig = u.Orig
		}
		c := &media.Unit{Track: u.Track, PTS: squeeze(u.PTS), DTS: squeeze(u.DTS), KeyFrame: u.KeyFrame,
			Payload: u.Payload, Wall: u.Wall, Size: u.Size, Orig: orig}
		out = append(out, c)
	}
	return out
}
