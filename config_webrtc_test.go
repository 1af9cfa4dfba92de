package main

import (
	"strings"
	"testing"
)

// The webrtc: section's problems name their keys; a good one validates and
// reaches the webrtc package's Config.
func TestWebRTCConfig(t *testing.T) {
	c := mustLoad(t, "")
	if !c.WebRTC.Enabled || c.WebRTC.UDPAddress != ":8189" || c.WebRTC.TCPAddress != ":8189" {
		t.Fatalf("defaults: %+v", c.WebRTC)
	}
	for _, tc := range []struct{ yml, key string }{
		{"webrtc:\n  udpAddress: nope\n", "webrtc.udpAddress"},
		{"webrtc:\n  tcpAddress: nope\n", "webrtc.tcpAddress"},
		{"webrtc:\n  additionalHosts: [\"http://x\"]\n", "webrtc.additionalHosts[0]"},
		{"webrtc:\n  hostsOnly: true\n", "webrtc.hostsOnly"},
		{"webrtc:\n  iceServers: [{urls: [\"http://stun\"]}]\n", "webrtc.iceServers[0].urls"},
		{"webrtc:\n  iceServers: [{urls: []}]\n", "webrtc.iceServers[0].urls"},
		{"webrtc:\n  iceServers: [{urls: [\"turn:t.example.com\"]}]\n", "webrtc.iceServers[0].username"},
		{"webrtc:\n  handshakeTimeout: 1ms\n", "webrtc.handshakeTimeout"},
		{"webrtc:\n  keyframeInterval: 0s\n", "webrtc.keyframeInterval"},
	} {
		errs := joinErrs(mustLoad(t, tc.yml).Validate())
		if !strings.Contains(errs, tc.key+":") {
			t.Errorf("%q: want an error naming %s, got:\n%s", tc.yml, tc.key, errs)
		}
	}
	c = mustLoad(t, "webrtc:\n  additionalHosts: [\"203.0.113.7\", localhost]\n  iceServers: [{urls: [\"stun:stun.example.com:3478\"]}]\n")
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatal(joinErrs(errs))
	}
	wc, err := c.WebRTCServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(wc.AdditionalHosts) < 2 || wc.AdditionalHosts[0] != "203.0.113.7" || len(wc.ICEServers) != 1 {
		t.Fatalf("webrtc.Config %+v", wc)
	}
	// The web pages get the same ICE servers, and know that WHIP/WHEP are on.
	if w := c.WebServerConfig(); !w.WebRTC || len(w.ICEServers) != 1 || w.ICEServers[0].URLs[0] != "stun:stun.example.com:3478" {
		t.Fatalf("web.Config WebRTC %v, ICEServers %+v", w.WebRTC, w.ICEServers)
	}
	if w := mustLoad(t, "webrtc:\n  enabled: false\n").WebServerConfig(); w.WebRTC {
		t.Fatal("web.Config.WebRTC true with webrtc.enabled false")
	}
	if errs := joinErrs(mustLoad(t, "webrtc:\n  enabled: false\n  udpAddress: nope\n").Validate()); errs != "" {
		t.Fatalf("a disabled section is not checked, got:\n%s", errs)
	}
}
