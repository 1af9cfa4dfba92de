package webrtc

import (
	"context"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// A WHEP viewer of an H264+AAC source gets the picture from the source
// and the sound from its Opus companion (what the audio job publishes),
// both read by its one send loop; when the companion ends and comes back
// (the job restarted), the sound comes back too.
func TestCompanionSoundInTheSendLoop(t *testing.T) {
	env := newEnv(t, testPathConf(), func(c *Config) {
		c.OpusPath = func(source string) string { return source + "/opus" }
	})
	publishPictures(t, env, "live/src", true, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opus := &media.Track{Codec: media.CodecOpus, SampleRate: 48000, Channels: 2}
	publishOpus := func(stop <-chan struct{}) {
		pub, err := env.hub.PublishTrusted("live/src/opus", []*media.Track{opus}, server.PublishOptions{Protocol: "test", Derived: true})
		if err != nil {
			t.Error(err)
			return
		}
		defer pub.Close()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			at := time.Duration(i) * 20 * time.Millisecond
			pub.Write(&media.Unit{Track: opus, PTS: at, DTS: at, KeyFrame: true, Payload: [][]byte{{0xfc, 0xff, 0xfe}}})
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}
	stop1 := make(chan struct{})
	done1 := make(chan struct{})
	go func() { defer close(done1); publishOpus(stop1) }()

	pl := newPlayer(t)
	pl.connect(t, env.http.URL+"/live/src/whep")
	eventually(t, "player gets pictures and sound", 10*time.Second, func() bool {
		aus, audio, _, _ := pl.stats()
		return aus > 10 && audio > 10
	})

	// The job restarts: the companion ends and comes back.
	close(stop1)
	<-done1
	_, before, _, _ := pl.stats()
	stop2 := make(chan struct{})
	done2 := make(chan struct{})
	go func() { defer close(done2); publishOpus(stop2) }()
	defer func() { close(stop2); <-done2 }()
	eventually(t, "sound again after the companion came back", 10*time.Second, func() bool {
		_, audio, _, _ := pl.stats()
		return audio > before+10
	})
	if !ownSRTPUsed(env.srv) {
		t.Fatal("the viewer did not send through its own SRTP")
	}
}
