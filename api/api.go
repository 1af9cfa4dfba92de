// Package api serves the HTTP control plane under /api/v1: streams and
// their keys (create, list, delete, rotate), live figures per stream, and
// server info. Answers and errors are JSON; see openapi.yaml.
//
//	POST   /api/v1/streams                  admin: a new stream, its key and every URL
//	GET    /api/v1/streams                  the registered streams with their live state
//	GET    /api/v1/streams/{id}             one, with its live figures
//	DELETE /api/v1/streams/{id}             key or admin: delete, kick its publisher
//	POST   /api/v1/streams/{id}/rotate-key  key or admin: a new key, kick the publisher
//	GET    /api/v1/paths                    admin: every live path (registered or not) with figures
//	GET    /api/v1/info                     admin: version, uptime, counts
//	GET    /api/v1/sessions                 admin: every publisher and player
//	DELETE /api/v1/sessions/{id}            admin: kick one
//	POST   /api/v1/sign                     admin: signed play links with an expiry
//	POST   /api/v1/config/reload            admin: reload the config file now
//	GET    /api/v1/config/reload            admin: the last reload's status
//	GET    /api/v1/openapi.yaml             this API, described
//
// Admin requests carry "Authorization: Bearer <api.adminToken>"; with no
// token configured they are taken from loopback addresses only. A stream's
// own requests carry its stream key the same way.
package api

import (
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/streamhub/streamhub/auth"
	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/registry"
	"github.com/streamhub/streamhub/server"
	"github.com/streamhub/streamhub/transcode"
)

//go:embed openapi.yaml
var openapi []byte

// Config configures the API.
type Config struct {
	// AdminToken guards the admin endpoints; "" allows them from loopback
	// addresses only.
	AdminToken string
	// PublicHost is the host name put in the URLs handed out; "" takes the
	// request's Host (without its port).
	PublicHost string
	// The listen addresses, for the ports in the URLs.
	RTMPAddr, RTSPAddr, SRTAddr, HTTPAddr string
	// HTTPS: the HTTP server has TLS.
	HTTPS bool
	// Version is reported by /info.
	Version string
	// Signer signs play links (POST /api/v1/sign); nil: off.
	Signer *auth.Signer
	// Cluster, if set, returns the node's cluster status for
	// GET /api/v1/cluster (a JSON object); nil: the node is standalone.
	Cluster func() any
	// Reloader reloads the config file (POST /api/v1/config/reload); nil: off.
	Reloader Reloader
	// Recording, if set, returns a path's recording state and disk use
	// (the recorder's), shown in the stream views; nil: recording is off.
	Recording func(path string) any
}

// Ladder is what the API shows of the transcoder.
type Ladder interface {
	Status(source string) (transcode.Status, bool)
}

// Handler serves /api/v1/. It is an http.Handler.
type Handler struct {
	conf    Config
	hub     *server.Hub
	reg     registry.Registry
	ladder  Ladder
	log     *slog.Logger
	mux     *http.ServeMux
	started time.Time

	mu    sync.Mutex // mu guards rates
	rates map[string]rateSample
}

type rateSample struct {
	bytes uint64
	at    time.Time
	bps   float64
}

// New returns the API handler. ladder may be nil.
func New(conf Config, hub *server.Hub, reg registry.Registry, ladder Ladder, log *slog.Logger) *Handler {
	h := &Handler{conf: conf, hub: hub, reg: reg, ladder: ladder, log: log.With("component", "api"), mux: http.NewServeMux(),
		started: time.Now(), rates: map[string]rateSample{}}
	h.mux.HandleFunc("POST /api/v1/streams", h.admin(h.createStream))
	h.mux.HandleFunc("GET /api/v1/streams", h.listStreams)
	h.mux.HandleFunc("GET /api/v1/streams/{id}", h.getStream)
	h.mux.HandleFunc("DELETE /api/v1/streams/{id}", h.keyOrAdmin(h.deleteStream))
	h.mux.HandleFunc("POST /api/v1/streams/{id}/rotate-key", h.keyOrAdmin(h.rotateKey))
	h.mux.HandleFunc("GET /api/v1/paths", h.admin(h.listPaths))
	h.mux.HandleFunc("GET /api/v1/info", h.admin(h.info))
	h.mux.HandleFunc("POST /api/v1/sign", h.admin(h.sign))
	h.mux.HandleFunc("GET /api/v1/sessions", h.admin(h.sessions))
	h.mux.HandleFunc("DELETE /api/v1/sessions/{id}", h.admin(h.kickSession))
	h.mux.HandleFunc("GET /api/v1/cluster", h.admin(h.cluster))
	h.mux.HandleFunc("POST /api/v1/config/reload", h.admin(h.reloadConfig))
	h.mux.HandleFunc("GET /api/v1/config/reload", h.admin(h.lastReload))
	h.mux.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(openapi) //nolint:errcheck // client gone
	})
	// The catch-all matches every method, so a known path asked with
	// another method lands here too: that is a 405, not a 404.
	known := http.NewServeMux()
	for _, p := range []string{"/api/v1/streams", "/api/v1/streams/{id}", "/api/v1/streams/{id}/rotate-key", "/api/v1/paths",
		"/api/v1/info", "/api/v1/sign", "/api/v1/sessions", "/api/v1/sessions/{id}", "/api/v1/openapi.yaml",
		"/api/v1/config/reload", "/api/v1/cluster"} {
		known.HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
	}
	h.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := known.Handler(r); pattern != "" {
			fail(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path+" (see /api/v1/openapi.yaml)")
			return
		}
		fail(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path+" (see /api/v1/openapi.yaml)")
	})
	return h
}

// ServeHTTP serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead && crossSite(r) {
		fail(w, http.StatusForbidden, "a request from a page of another site may not change anything here")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// reply writes v as JSON with status.
func reply(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n')) //nolint:errcheck // client gone
}

// fail writes a JSON error with the reason.
func fail(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": reason})
	w.Write(append(b, '\n')) //nolint:errcheck // client gone
}

// decodeBody decodes the request's JSON body (at most 4 KiB, no unknown
// field) into v, or answers 400 with the shape wanted and reports false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, shape string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "the body must be JSON "+shape+": "+err.Error())
		return false
	}
	return true
}

// bearer returns the request's bearer token, "" if none.
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(a, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

func isLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isAdmin reports whether r carries the admin token or, with none
// configured, comes from a loopback address to a loopback host name (a
// page whose name was rebound to 127.0.0.1 sends its own) and was not
// forwarded by a proxy.
func (h *Handler) isAdmin(r *http.Request) bool {
	if h.conf.AdminToken == "" {
		return isLoopback(r) && loopbackHost(r.Host) && r.Header.Get("X-Forwarded-For") == "" && r.Header.Get("Forwarded") == ""
	}
	return subtle.ConstantTimeCompare([]byte(bearer(r)), []byte(h.conf.AdminToken)) == 1
}

// loopbackHost reports whether a Host header names this machine.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// crossSite reports whether a browser sent r from a page of another site:
// a state-changing request from there is refused (a form or a script of
// any web page could otherwise rotate keys of this server).
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err != nil || u.Host != r.Host
	}
	return false
}

// refuse answers a failed authorization after the hub's refusal delay
// (100 to 300 ms, which makes guessing slow), spending one of the
// address's failures (auth.failureBudget), and logs it summarized per
// address.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.hub.AuthFailed(peerOf(r))
	h.hub.LogRefusal(h.log, r.RemoteAddr, "api "+strconv.Itoa(status), "api request refused", "remote", r.RemoteAddr,
		"method", r.Method, "path", guard.Truncate(r.URL.Path), "status", status)
	fail(w, status, reason)
}

// throttled answers 429 when r's address has spent its failure budget:
// its credential is not even checked.
func (h *Handler) throttled(w http.ResponseWriter, r *http.Request) bool {
	if h.hub.AuthGate(peerOf(r)) == nil {
		return false
	}
	h.hub.LogRefusal(h.log, r.RemoteAddr, "api 429", "api request refused", "remote", r.RemoteAddr,
		"method", r.Method, "path", guard.Truncate(r.URL.Path), "status", http.StatusTooManyRequests)
	fail(w, http.StatusTooManyRequests, "too many failed attempts from this address (auth.failureBudget): wait a minute and try again")
	return true
}

func peerOf(r *http.Request) server.Peer {
	return server.Peer{Protocol: "api", Remote: r.RemoteAddr}
}

func (h *Handler) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.throttled(w, r) {
			return
		}
		if !h.isAdmin(r) {
			if h.conf.AdminToken == "" {
				h.refuse(w, r, http.StatusForbidden, "admin endpoint: only from the server itself unless api.adminToken is set (then send Authorization: Bearer <token>)")
				return
			}
			h.refuse(w, r, http.StatusUnauthorized, "admin endpoint: send Authorization: Bearer <api.adminToken>")
			return
		}
		next(w, r)
	}
}

func (h *Handler) keyOrAdmin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, err := h.reg.Get(id); err != nil {
			failRegistry(w, id, err)
			return
		}
		if h.throttled(w, r) {
			return
		}
		ok, err := h.reg.KeyMatches(id, bearer(r))
		if err != nil {
			failRegistry(w, id, err)
			return
		}
		if !ok && !h.isAdmin(r) {
			h.refuse(w, r, http.StatusUnauthorized, "send the stream's key (or the admin token) as Authorization: Bearer <key>")
			return
		}
		next(w, r)
	}
}

// Created is the answer to POST /api/v1/streams.
type Created struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Key     string  `json:"key"`
	Path    string  `json:"path"`
	Publish Publish `json:"publish"`
	Play    Play    `json:"play"`
}

// Publish holds the URLs a streamer publishes with; they contain the key.
type Publish struct {
	RTMPServer string `json:"rtmpServer"` // OBS "Server"
	RTMPKey    string `json:"rtmpKey"`    // OBS "Stream Key"
	RTMPURL    string `json:"rtmpURL"`    // ffmpeg
	SRT        string `json:"srt"`
	RTSP       string `json:"rtsp"`
}

// Play holds the viewers' URLs; they never contain the key.
type Play struct {
	FLV   string `json:"flv"`
	HLS   string `json:"hls"`
	RTSP  string `json:"rtsp"`
	RTMP  string `json:"rtmp"`
	SRT   string `json:"srt"`
	Watch string `json:"watch"`
}

func (h *Handler) host(r *http.Request) string {
	if h.conf.PublicHost != "" {
		return h.conf.PublicHost
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		return r.Host
	}
	return host
}

// hostPort joins host and the port of a listen address.
func hostPort(host, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return host
	}
	return net.JoinHostPort(host, port)
}

func (h *Handler) playURLs(r *http.Request, path string) Play {
	host := h.host(r)
	scheme := "http"
	if h.conf.HTTPS {
		scheme = "https"
	}
	web := scheme + "://" + hostPort(host, h.conf.HTTPAddr)
	return Play{
		FLV: web + "/" + path + ".flv", HLS: web + "/" + path + "/index.m3u8",
		RTSP:  "rtsp://" + hostPort(host, h.conf.RTSPAddr) + "/" + path,
		RTMP:  "rtmp://" + hostPort(host, h.conf.RTMPAddr) + "/" + path,
		SRT:   "srt://" + hostPort(host, h.conf.SRTAddr) + "?streamid=read:" + path,
		Watch: web + "/watch/" + path,
	}
}

func (h *Handler) created(r *http.Request, s registry.Stream, key string) Created {
	host := h.host(r)
	path := h.reg.Path(s.ID)
	rtmp := "rtmp://" + hostPort(host, h.conf.RTMPAddr) + "/" + h.reg.Prefix()
	return Created{ID: s.ID, Name: s.Name, Key: key, Path: path,
		Publish: Publish{RTMPServer: rtmp, RTMPKey: key, RTMPURL: rtmp + "/" + key,
			SRT:  "srt://" + hostPort(host, h.conf.SRTAddr) + "?streamid=publish:" + h.reg.Prefix() + "/" + key,
			RTSP: "rtsp://" + hostPort(host, h.conf.RTSPAddr) + "/" + h.reg.Prefix() + "/" + key},
		Play: h.playURLs(r, path)}
}

func (h *Handler) createStream(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decodeBody(w, r, &req, `{"name": "..."}`) {
		return
	}
	s, key, err := h.reg.Create(req.Name)
	if err != nil {
		status := registryStatus(err)
		if errors.Is(err, registry.ErrBadName) {
			status = http.StatusBadRequest
		}
		fail(w, status, err.Error())
		return
	}
	h.log.Info("stream created", "id", s.ID, "name", s.Name, "remote", r.RemoteAddr)
	reply(w, http.StatusCreated, h.created(r, s, key))
}

// StreamInfo is a registered stream with its live state.
type StreamInfo struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Path    string    `json:"path"`
	Created time.Time `json:"created"`
	Live    bool      `json:"live"`
	Play    Play      `json:"play"`
	// Recording is the recorder's state of the path (recording on only).
	Recording any `json:"recording,omitempty"`
	// Figures is set while the stream is live.
	Figures *Figures `json:"figures,omitempty"`
}

// Figures are a live path's numbers.
type Figures struct {
	Path       string      `json:"path"`
	Publishing bool        `json:"publishing"`
	Publisher  string      `json:"publisher,omitempty"` // protocol and remote address
	Tracks     []TrackInfo `json:"tracks"`
	BitrateIn  int         `json:"bitrateIn"` // bits per second, over the time since the last ask (or the uptime)
	BytesIn    uint64      `json:"bytesIn"`
	UnitsIn    uint64      `json:"unitsIn"`
	Readers    int         `json:"readers"`
	// Relays counts the edges of the cluster reading the path (not in
	// readers).
	Relays int `json:"relays,omitempty"`
	// ReadersByProtocol counts the players per protocol (hls: the
	// distinct clients, by address and User-Agent, seen in the last 10 s).
	ReadersByProtocol map[string]int `json:"readersByProtocol"`
	BytesOut          uint64         `json:"bytesOut"`
	Drops             uint64         `json:"drops"`
	UptimeSeconds     float64        `json:"uptimeSeconds"`
	Publishes         uint64         `json:"publishes"`
	Renditions        []string       `json:"renditions,omitempty"`
	Transcoder        *Transcoder    `json:"transcoder,omitempty"`
	Rungs             []RungReader   `json:"rungs,omitempty"`
	// PublisherRole, Standbys, Takeovers and Failbacks: hot standby
	// (paths.*.standby, docs/standby.md): the live publisher's role, the
	// publishers waiting to take over, and how often one did.
	PublisherRole string                `json:"publisherRole,omitempty"`
	Standbys      []server.StandbyStats `json:"standbys,omitempty"`
	Takeovers     uint64                `json:"takeovers,omitempty"`
	Failbacks     uint64                `json:"failbacks,omitempty"`
	// Recording is the recorder's state of the path (recording on only).
	Recording any `json:"recording,omitempty"`
}

// TrackInfo describes one track.
type TrackInfo struct {
	Codec      string  `json:"codec"`
	Width      int     `json:"width,omitempty"`
	Height     int     `json:"height,omitempty"`
	FPS        float64 `json:"fps,omitempty"`
	SampleRate int     `json:"sampleRate,omitempty"`
	Channels   int     `json:"channels,omitempty"`
}

// RungReader is one ladder rung's readers.
type RungReader struct {
	Name    string `json:"name"`
	Readers int    `json:"readers"`
}

// Transcoder is the ladder's state.
type Transcoder struct {
	State    string   `json:"state"`
	PID      int      `json:"pid,omitempty"`
	Restarts int      `json:"restarts"`
	LastExit string   `json:"lastExit,omitempty"`
	Stderr   []string `json:"stderr,omitempty"`
}

func (h *Handler) figures(s *server.Stream) *Figures {
	st := s.Stats()
	f := &Figures{Tracks: []TrackInfo{}, Path: st.Path, Publishing: st.Publishing, Publisher: st.Publisher, BytesIn: st.BytesIn, UnitsIn: st.UnitsIn,
		Readers: st.Readers - st.Relays, Relays: st.Relays, Drops: st.Drops, UptimeSeconds: st.Uptime.Seconds(), Publishes: st.Publishes,
		ReadersByProtocol: st.ReadersByProtocol, BytesOut: st.BytesOut,
		Standbys: st.Standbys, Takeovers: st.Takeovers, Failbacks: st.Failbacks}
	if s.Config().Standby != server.StandbyOff {
		f.PublisherRole = st.PublisherRole
	}
	for _, t := range s.Tracks() {
		f.Tracks = append(f.Tracks, trackInfo(t))
	}
	f.BitrateIn = h.rate(st.Path, st.BytesIn, st.Uptime)
	if h.conf.Recording != nil {
		f.Recording = h.conf.Recording(st.Path)
	}
	for _, o := range h.hub.Streams() {
		if rest, ok := strings.CutPrefix(o.Path(), st.Path+"/"); ok && o.Derived() && !strings.Contains(rest, "/") {
			f.Renditions = append(f.Renditions, rest)
			f.Rungs = append(f.Rungs, RungReader{Name: rest, Readers: o.ReaderCount()})
		}
	}
	if h.ladder != nil {
		if ts, ok := h.ladder.Status(st.Path); ok {
			f.Transcoder = &Transcoder{State: ts.State, PID: ts.PID, Restarts: ts.Restarts, LastExit: ts.LastExit, Stderr: ts.Stderr}
		}
	}
	return f
}

func trackInfo(t *media.Track) TrackInfo {
	return TrackInfo{Codec: t.Codec.String(), Width: t.Width, Height: t.Height, FPS: t.FPS, SampleRate: t.SampleRate, Channels: t.Channels}
}

// rate returns the bits per second of path since it was last asked (at
// least a second ago), or over its uptime the first time.
func (h *Handler) rate(path string, bytes uint64, uptime time.Duration) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	last, ok := h.rates[path]
	switch {
	case ok && bytes >= last.bytes && now.Sub(last.at) >= time.Second:
		bps := float64(bytes-last.bytes) * 8 / now.Sub(last.at).Seconds()
		h.rates[path] = rateSample{bytes: bytes, at: now, bps: bps}
		return int(bps)
	case ok && bytes >= last.bytes:
		return int(last.bps)
	}
	bps := 0.0
	if uptime > 0 {
		bps = float64(bytes) * 8 / uptime.Seconds()
	}
	if len(h.rates) > 10000 { // paths come and go: start over rather than grow
		clear(h.rates)
	}
	h.rates[path] = rateSample{bytes: bytes, at: now, bps: bps}
	return int(bps)
}

// cluster answers the node's cluster status, with the relays reading each
// path (an origin's edges).
func (h *Handler) cluster(w http.ResponseWriter, _ *http.Request) {
	relays := map[string]int{}
	for _, s := range h.hub.Streams() {
		if n := s.Stats().Relays; n > 0 {
			relays[s.Path()] = n
		}
	}
	if h.conf.Cluster == nil {
		reply(w, http.StatusOK, map[string]any{"role": "standalone", "relays": relays})
		return
	}
	st := h.conf.Cluster()
	b, err := json.Marshal(st)
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		fail(w, http.StatusInternalServerError, "cluster status: "+err.Error())
		return
	}
	m["relays"] = relays
	reply(w, http.StatusOK, m)
}

func (h *Handler) info(w http.ResponseWriter, _ *http.Request) {
	live := 0
	for _, s := range h.hub.Streams() {
		if s.Publishing() {
			live++
		}
	}
	out := map[string]any{"version": h.conf.Version, "uptimeSeconds": time.Since(h.started).Seconds(),
		"livePaths": live, "registry": h.reg.Health()}
	if l, err := h.reg.List(); err == nil { // the database down: Health says why
		out["registeredStreams"] = len(l)
	}
	reply(w, http.StatusOK, out)
}

func (h *Handler) streamInfo(r *http.Request, s registry.Stream) StreamInfo {
	path := h.reg.Path(s.ID)
	si := StreamInfo{ID: s.ID, Name: s.Name, Path: path, Created: s.Created, Play: h.playURLs(r, path)}
	if h.conf.Recording != nil {
		si.Recording = h.conf.Recording(path)
	}
	if hs := h.hub.Stream(path); hs != nil {
		si.Live = hs.Publishing()
		si.Figures = h.figures(hs)
		if !h.isAdmin(r) {
			// Anyone may list streams: not the streamer's address, nor
			// the transcoder's process and messages.
			si.Figures.Publisher, _, _ = strings.Cut(si.Figures.Publisher, " ")
			for i := range si.Figures.Standbys {
				si.Figures.Standbys[i].Remote = ""
			}
			if t := si.Figures.Transcoder; t != nil {
				si.Figures.Transcoder = &Transcoder{State: t.State, Restarts: t.Restarts}
			}
		}
	}
	return si
}

func (h *Handler) listStreams(w http.ResponseWriter, r *http.Request) {
	out := []StreamInfo{}
	l, err := h.reg.List()
	if err != nil {
		fail(w, registryStatus(err), err.Error())
		return
	}
	for _, s := range l {
		out = append(out, h.streamInfo(r, s))
	}
	reply(w, http.StatusOK, map[string]any{"streams": out})
}

func (h *Handler) getStream(w http.ResponseWriter, r *http.Request) {
	s, err := h.reg.Get(r.PathValue("id"))
	if err != nil {
		failRegistry(w, r.PathValue("id"), err)
		return
	}
	reply(w, http.StatusOK, h.streamInfo(r, s))
}

func (h *Handler) deleteStream(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := h.reg.Delete(id); err != nil {
		fail(w, registryStatus(err), err.Error())
		return
	}
	kicked := h.hub.KickPublisher(h.reg.Path(id))
	h.log.Info("stream deleted", "id", id, "kicked", kicked, "remote", r.RemoteAddr)
	reply(w, http.StatusOK, map[string]any{"deleted": id, "kicked": kicked})
}

func (h *Handler) rotateKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	key, err := h.reg.RotateKey(id)
	if err != nil {
		fail(w, registryStatus(err), err.Error())
		return
	}
	kicked := h.hub.KickPublisher(h.reg.Path(id))
	h.log.Info("stream key rotated", "id", id, "kicked", kicked, "remote", r.RemoteAddr)
	s, err := h.reg.Get(id)
	if err != nil {
		failRegistry(w, id, err)
		return
	}
	reply(w, http.StatusOK, h.created(r, s, key))
}

func (h *Handler) listPaths(w http.ResponseWriter, _ *http.Request) {
	out := []*Figures{}
	for _, s := range h.hub.Streams() {
		out = append(out, h.figures(s))
	}
	slices.SortFunc(out, func(a, b *Figures) int { return strings.Compare(a.Path, b.Path) })
	reply(w, http.StatusOK, map[string]any{"paths": out})
}

// Signed is the answer to POST /api/v1/sign.
type Signed struct {
	Path    string    `json:"path"`
	Key     string    `json:"key"`
	Expires time.Time `json:"expires"`
	Play    Play      `json:"play"`
}

// sign makes play links for a path that work until a time.
func (h *Handler) sign(w http.ResponseWriter, r *http.Request) {
	if h.conf.Signer == nil {
		fail(w, http.StatusNotFound, "signed play links are off: set auth.playSecret")
		return
	}
	var req struct {
		Path string `json:"path"`
		TTL  string `json:"ttl"`
	}
	if !decodeBody(w, r, &req, `{"path": "live/x", "ttl": "1h"}`) {
		return
	}
	if err := server.ValidatePath(req.Path); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl < time.Second || ttl > 366*24*time.Hour {
		fail(w, http.StatusBadRequest, "ttl must be a duration from 1s to 8784h, e.g. \"1h\"")
		return
	}
	exp := time.Now().Add(ttl).Truncate(time.Second)
	key := h.conf.Signer.Sign(req.Path, exp)
	p := h.playURLs(r, req.Path)
	q := "?key=" + key
	p.FLV, p.HLS, p.RTSP, p.RTMP, p.Watch = p.FLV+q, p.HLS+q, p.RTSP+q, p.RTMP+q, p.Watch+q
	p.SRT = strings.Replace(p.SRT, "read:"+req.Path, "read:"+req.Path+q, 1)
	reply(w, http.StatusOK, Signed{Path: req.Path, Key: key, Expires: exp.UTC(), Play: p})
}

func (h *Handler) sessions(w http.ResponseWriter, _ *http.Request) {
	out := h.hub.Sessions()
	if out == nil {
		out = []server.Session{}
	}
	reply(w, http.StatusOK, map[string]any{"sessions": out})
}

func (h *Handler) kickSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !h.hub.KickSession(id) {
		fail(w, http.StatusNotFound, "no session with id "+strconv.Quote(id)+" (see GET /api/v1/sessions)")
		return
	}
	reply(w, http.StatusOK, map[string]any{"kicked": id})
}

// registryStatus is the HTTP status of a registry error.
func registryStatus(err error) int {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, registry.ErrUnavailable):
		return http.StatusServiceUnavailable // PostgreSQL down or slow: try again
	}
	return http.StatusInternalServerError
}

// failRegistry answers a registry error about the stream id.
func failRegistry(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, registry.ErrNotFound) {
		fail(w, http.StatusNotFound, "no stream with id "+strconv.Quote(id))
		return
	}
	fail(w, registryStatus(err), err.Error())
}
