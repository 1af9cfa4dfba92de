package webrtc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/transport/v5"
	pwebrtc "github.com/pion/webrtc/v4"
)

// Codecs. WHIP takes what the hub carries; WHEP sends the same. H264 is
// registered with the profiles browsers and OBS offer, since pion matches
// profile_idc and constraint flags exactly (the level is ignored); for
// WHEP one profile is announced (42e01f, as mediamtx does): decoders take
// any profile, and Chrome's strict matching accepts this one.
var (
	feedback = []pwebrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}

	h264Profiles = []string{"42e01f", "42001f", "4d001f", "4d401f", "64001f", "640c1f", "f4001f"}

	opusCodec = pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1"}
	h264Codec = pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: feedback}
	h265Codec = pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeH265, ClockRate: 90000, RTCPFeedback: feedback}
	av1Codec  = pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeAV1, ClockRate: 90000, RTCPFeedback: feedback}
)

// supportedCodecs is said to clients whose offer has none of them.
const supportedCodecs = "H264 (packetization-mode=1), H265 and AV1 video; Opus audio"

// registerCodecs registers the codecs of WHIP (every H264 profile) or
// WHEP (one) on m.
func registerCodecs(m *pwebrtc.MediaEngine, whip bool) error {
	pt := pwebrtc.PayloadType(96)
	reg := func(c pwebrtc.RTPCodecCapability, typ pwebrtc.RTPCodecType) error {
		err := m.RegisterCodec(pwebrtc.RTPCodecParameters{RTPCodecCapability: c, PayloadType: pt}, typ)
		pt++
		return err
	}
	var err error
	if whip {
		for _, p := range h264Profiles {
			c := h264Codec
			c.SDPFmtpLine = strings.Replace(c.SDPFmtpLine, "42e01f", p, 1)
			err = errors.Join(err, reg(c, pwebrtc.RTPCodecTypeVideo))
		}
	} else {
		err = reg(h264Codec, pwebrtc.RTPCodecTypeVideo)
	}
	err = errors.Join(err, reg(h265Codec, pwebrtc.RTPCodecTypeVideo))
	err = errors.Join(err, reg(av1Codec, pwebrtc.RTPCodecTypeVideo))
	pt = 111
	return errors.Join(err, reg(opusCodec, pwebrtc.RTPCodecTypeAudio))
}

// newAPI builds the pion API of WHIP (receive) or WHEP (send).
//
// Interceptors: WHIP gets a NACK generator (ask the publisher to resend),
// receiver reports and TWCC feedback (a browser's encoder adapts its rate
// to it). WHEP gets none: its sender reports (players sync audio and
// video by them) and retransmission are ours (egress.go), the reports
// from the send loop once a second instead of a lock and a clock reading
// per packet, and retransmission from a per-viewer index into the
// payloads all viewers share, where pion's NACK responder would copy
// every packet into a per-viewer buffer.
//
// ifs is the host's interfaces, shared by every session.
func (s *Server) newAPI(whip bool, ifs transport.Net) (*pwebrtc.API, error) {
	m := &pwebrtc.MediaEngine{}
	if err := registerCodecs(m, whip); err != nil {
		return nil, fmt.Errorf("webrtc: codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if whip {
		gen, err := nack.NewGeneratorInterceptor()
		if err != nil {
			return nil, err
		}
		ir.Add(gen)
		rr, err := report.NewReceiverInterceptor()
		if err != nil {
			return nil, err
		}
		ir.Add(rr)
		if err := pwebrtc.ConfigureTWCCSender(m, ir); err != nil {
			return nil, err
		}
	}

	se := pwebrtc.SettingEngine{}
	se.LoggerFactory = pionLogger(s.log)
	se.SetNet(ifs)
	se.SetICEUDPMux(s.udpMux)
	nets := []pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4, pwebrtc.NetworkTypeUDP6}
	if s.tcpMux != nil {
		se.SetICETCPMux(s.tcpMux)
		nets = append(nets, pwebrtc.NetworkTypeTCP4, pwebrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(nets)
	// No mDNS: a server has real addresses, and the default (query only)
	// binds port 5353 and costs CPU per session.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Disconnected after 5 s without an answer to our checks, failed 10 s
	// later: a viewer that vanished (no DELETE) is freed within 15 s.
	se.SetICETimeouts(5*time.Second, 10*time.Second, 2*time.Second)
	// DTLS must complete within the handshake timeout too.
	hs := s.conf.HandshakeTimeout
	se.SetDTLSConnectContextMaker(func() (context.Context, func()) { return context.WithTimeout(context.Background(), hs) })
	se.SetIncludeLoopbackCandidate(s.conf.Loopback)
	if len(s.conf.AdditionalHosts) > 0 {
		mode := pwebrtc.ICEAddressRewriteAppend
		if s.conf.HostsOnly {
			mode = pwebrtc.ICEAddressRewriteReplace
		}
		if err := se.SetICEAddressRewriteRules(pwebrtc.ICEAddressRewriteRule{
			External: s.conf.AdditionalHosts, AsCandidateType: pwebrtc.ICECandidateTypeHost, Mode: mode,
		}); err != nil {
			return nil, fmt.Errorf("webrtc: webrtc.additionalHosts: %w", err)
		}
	}
	return pwebrtc.NewAPI(pwebrtc.WithMediaEngine(m), pwebrtc.WithInterceptorRegistry(ir), pwebrtc.WithSettingEngine(se)), nil
}
