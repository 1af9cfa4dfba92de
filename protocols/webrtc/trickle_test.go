package webrtc

import (
	"net/http"
	"strings"
	"testing"
	"time"

	pwebrtc "github.com/pion/webrtc/v4"
)

// A player trickles its candidates (204), is refused a stale If-Match
// (412) and a malformed fragment (400), then restarts ICE (200 with the
// server's new fragment and ETag) and keeps playing.
func TestTrickleAndRestart(t *testing.T) {
	env := newEnv(t, testPathConf(), nil)
	pub := newPublisher(t, false)
	pub.connect(t, env.http.URL+"/live/t/whip", true)
	pub.start()
	eventually(t, "published", 10*time.Second, func() bool { return env.hub.Stream("live/t") != nil })

	pl := newPlayer(t)
	offer := offerOf(t, pl.pc, false)
	full := pl.pc.LocalDescription().SDP
	pl.posted = time.Now()
	res, answer := do(t, http.MethodPost, env.http.URL+"/live/t/whep", "application/sdp", replaceICE(offer, ufragOf(offer), pwdOf(offer)))
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %s %s", res.Status, answer)
	}
	loc, etag := env.http.URL+res.Header.Get("Location"), res.Header.Get("ETag")
	if err := pl.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	frag := "a=ice-ufrag:" + ufragOf(full) + "\r\na=ice-pwd:" + pwdOf(full) + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:" + firstMid(full) + "\r\n"
	for _, c := range candidatesOf(full) {
		frag += "a=" + c + "\r\n"
	}
	frag += "a=end-of-candidates\r\n"
	const ct = "application/trickle-ice-sdpfrag"
	if res, body := do(t, http.MethodPatch, loc, ct, frag, "If-Match", etag); res.StatusCode != http.StatusNoContent {
		t.Fatalf("trickle PATCH: %s %s", res.Status, body)
	}
	if res, _ := do(t, http.MethodPatch, loc, ct, frag, "If-Match", `"stale"`); res.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %s, want 412", res.Status)
	}
	if res, body := do(t, http.MethodPatch, loc, ct, "a=candidate:1 1 udp\r\n"); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "line 1") {
		t.Fatalf("malformed fragment: %s %q, want 400 naming the line", res.Status, body)
	}
	eventually(t, "playing", 10*time.Second, func() bool { aus, _, _, _ := pl.stats(); return aus > 5 })

	// ICE restart from the client.
	ro, err := pl.pc.CreateOffer(&pwebrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	g := pwebrtc.GatheringCompletePromise(pl.pc)
	if err := pl.pc.SetLocalDescription(ro); err != nil {
		t.Fatal(err)
	}
	<-g
	nl := pl.pc.LocalDescription().SDP
	rfrag := "a=ice-ufrag:" + ufragOf(nl) + "\r\na=ice-pwd:" + pwdOf(nl) + "\r\n"
	for _, c := range candidatesOf(nl) {
		rfrag += "a=" + c + "\r\n"
	}
	res, body := do(t, http.MethodPatch, loc, ct, rfrag, "If-Match", `"*"`)
	if res.StatusCode != http.StatusOK || res.Header.Get("ETag") == etag || res.Header.Get("Content-Type") != ct {
		t.Fatalf("restart PATCH: %s, ETag %q (was %q), %q", res.Status, res.Header.Get("ETag"), etag, body)
	}
	sf, err := parseSDPFrag(body)
	if err != nil || sf.Ufrag == "" || sf.Ufrag == ufragOf(answer) || len(sf.Candidates) == 0 {
		t.Fatalf("restart answer fragment %q: %+v %v", body, sf, err)
	}
	if err := pl.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: replaceICE(answer, sf.Ufrag, sf.Pwd)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range sf.Candidates {
		mid := firstMid(answer)
		if err := pl.pc.AddICECandidate(pwebrtc.ICECandidateInit{Candidate: c.Value, SDPMid: &mid}); err != nil {
			t.Fatal(err)
		}
	}
	before, _, _, _ := pl.stats()
	eventually(t, "playing after the restart", 15*time.Second, func() bool { aus, _, _, _ := pl.stats(); return aus > before+25 })
	if !strings.Contains(env.logs.String(), "ICE restarted") {
		t.Fatal("no ICE restart in the log")
	}
}
