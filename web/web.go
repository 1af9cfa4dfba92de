// Package web serves the pages embedded in the binary: the list of live
// streams, a watch page per stream (hls.js, mpegts.js or WHEP, a rendition
// picker, a latency readout and a chat) and a broadcast page that creates
// a stream through the API, shows the settings for OBS and goes live from
// the browser's camera or screen over WHIP.
//
//	GET /                   live streams (refreshed from /streams.json)
//	GET /streams.json       the same list as JSON
//	GET /watch/<path>       player and chat; ?mode=webrtc|hls|flv&rung=<name>
//	GET /broadcast          create a stream (POST /api/v1/streams from the page), go live over WHIP
//	GET /chat/<path>        the chat room of <path> (WebSocket, chat.go)
//	GET /static/...         CSS, scripts and the player libraries (static/vendor)
//
// The player libraries are copied from npm into static/vendor by
// `npm ci` in web/ (package.json, vendor.mjs); scripts/run.sh and
// scripts/test.sh do it before building. Nothing is loaded from the internet.
package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/streamhub/streamhub/server"
)

// Config is what the web pages and the chat need beyond the hub.
type Config struct {
	// Renditions returns the rung names of path's bitrate ladder ("480p",
	// ...), which the watch page offers in FLV mode. Nil offers none (a
	// rung asked for with ?rung= still plays).
	Renditions func(path string) []string
	// Viewers returns how many people watch path. Nil counts the stream's
	// hub readers (Stream.Stats().Readers), where all HLS players together
	// and the ladder count one each.
	Viewers func(path string) int
	// ChatHistory is how many of a room's last messages a joiner gets.
	ChatHistory int
	// ChatMaxBytes caps a chat message's text, in bytes of UTF-8.
	ChatMaxBytes int
	// ChatRate messages per ChatRateWindow are allowed per connection; the
	// next ones are refused with an error frame until the window moves on.
	ChatRate       int
	ChatRateWindow time.Duration
	// ChatMaxConns caps the chat connections of the whole server; one more
	// is answered 503.
	ChatMaxConns int
	// WebRTC says that the server takes WHIP and WHEP on its HTTP port
	// (webrtc.enabled): only then does the broadcast page go live from the
	// browser and the watch page offer its WebRTC mode.
	WebRTC bool
	// ICEServers are the STUN/TURN servers the pages give their
	// RTCPeerConnection (webrtc.iceServers); none is needed on a LAN or
	// when the server's address is reachable.
	ICEServers []ICEServer
	// Rewind returns how far back the watch page lets a viewer rewind
	// path (its recording, paths.*.rewindWindow), 0 for no rewind; it
	// also lists the path's recordings when it is not nil. Nil: neither.
	Rewind func(path string) time.Duration
}

// ICEServer is one STUN or TURN server, as the pages hand it to
// RTCPeerConnection (the JSON of RTCIceServer).
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// DefaultConfig returns the defaults: a history of 50 messages, 500 bytes
// per message, 5 messages per 5 s per connection, 10000 connections.
func DefaultConfig() Config {
	return Config{
		ChatHistory:    50,
		ChatMaxBytes:   500,
		ChatRate:       5,
		ChatRateWindow: 5 * time.Second,
		ChatMaxConns:   10000,
	}
}

// Limits of the chat settings that Validate enforces.
const (
	maxChatHistory = 10000
	maxChatBytes   = 64 << 10
)

// Validate returns an error naming every field out of range (a zero field
// is out of range: start from DefaultConfig).
func (c Config) Validate() error {
	var errs []error
	check := func(name string, ok bool, want string) {
		if !ok {
			errs = append(errs, fmt.Errorf("web: %s %s", name, want))
		}
	}
	check("ChatHistory", c.ChatHistory >= 1 && c.ChatHistory <= maxChatHistory, "must be 1 to 10000 messages")
	check("ChatMaxBytes", c.ChatMaxBytes >= 1 && c.ChatMaxBytes <= maxChatBytes, "must be 1 to 65536 bytes")
	check("ChatRate", c.ChatRate >= 1, "must be at least 1 message")
	check("ChatRateWindow", c.ChatRateWindow > 0, "must be more than 0 (e.g. 5s)")
	check("ChatMaxConns", c.ChatMaxConns >= 1, "must be at least 1 connection")
	return errors.Join(errs...)
}

// orDefaults returns c with every field that Validate would refuse set to
// its DefaultConfig value.
func (c Config) orDefaults() Config {
	def := DefaultConfig()
	if c.ChatHistory < 1 || c.ChatHistory > maxChatHistory {
		c.ChatHistory = def.ChatHistory
	}
	if c.ChatMaxBytes < 1 || c.ChatMaxBytes > maxChatBytes {
		c.ChatMaxBytes = def.ChatMaxBytes
	}
	if c.ChatRate < 1 {
		c.ChatRate = def.ChatRate
	}
	if c.ChatRateWindow <= 0 {
		c.ChatRateWindow = def.ChatRateWindow
	}
	if c.ChatMaxConns < 1 {
		c.ChatMaxConns = def.ChatMaxConns
	}
	return c
}

// Handler serves the web pages and the chat. It is safe for concurrent use.
type Handler struct {
	hub    *server.Hub
	conf   Config
	log    *slog.Logger
	mux    *http.ServeMux
	pages  pages
	assets *assets
	chat   *chat
}

var _ http.Handler = (*Handler)(nil)

// New returns the handler with DefaultConfig and slog.Default(); it is
// NewWithConfig for callers that have no configuration for the pages.
func New(hub *server.Hub) *Handler {
	return NewWithConfig(hub, DefaultConfig(), slog.Default())
}

// NewWithConfig returns the handler. Fields of conf that Validate would
// refuse (zero ones included) take their DefaultConfig value; log nil is
// slog.Default(). Call Close at shutdown: it ends
// the chat connections, which http.Server.Shutdown does not see (they are
// hijacked).
func NewWithConfig(hub *server.Hub, conf Config, log *slog.Logger) *Handler {
	conf = conf.orDefaults()
	if log == nil {
		log = slog.Default()
	}
	a := newAssets(files)
	h := &Handler{
		hub:    hub,
		conf:   conf,
		log:    log,
		pages:  parsePages(a),
		assets: a,
		chat:   newChat(conf, log),
	}
	if missing := h.assets.missingVendor(); len(missing) > 0 {
		log.Warn("web: player libraries missing from this build; the watch page cannot play",
			"missing", missing, "fix", vendorHint)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.serveHome)
	mux.HandleFunc("GET /streams.json", h.serveStreamsJSON)
	mux.HandleFunc("GET /watch/{path...}", h.serveWatch)
	mux.HandleFunc("GET /broadcast", h.serveBroadcast)
	mux.HandleFunc("GET /chat/{path...}", h.serveChat)
	mux.Handle("GET /static/", h.assets)
	mux.HandleFunc("/", h.serveNotFound)
	h.mux = mux
	return h
}

// ServeHTTP serves the pages, the static files and the chat; anything else
// is a 404 page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// Close ends every chat connection (with a WebSocket close frame when the
// peer takes it within a second) and waits until their goroutines are
// gone. New chat connections are refused afterwards; pages are still served.
func (h *Handler) Close() {
	h.chat.close()
}
