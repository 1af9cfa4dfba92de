package web

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// contentSecurityPolicy allows only this server's scripts and styles (no
// inline script: user text can never run), blob: media and workers for
// Media Source Extensions and hls.js's worker, and connections back to
// this server (HTTP and the chat WebSocket).
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"

// pages are the parsed templates, by file name. Each is layout.html plus
// the page, which defines "title", "main" and "scripts".
type pages map[string]*template.Template

func parsePages(a *assets) pages {
	funcs := template.FuncMap{"asset": a.url}
	p := pages{}
	for _, name := range []string{"home.html", "watch.html", "broadcast.html", "error.html"} {
		p[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name))
	}
	return p
}

// render executes page into a buffer first, so that a template error is a
// clean 500 and not half a page.
func (h *Handler) render(w http.ResponseWriter, status int, page string, data any) {
	var b bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&b, "layout", data); err != nil {
		h.log.Error("web: template failed", "page", page, "err", err)
		http.Error(w, "web: the page could not be made; the server log says why", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	w.Write(b.Bytes()) //nolint:errcheck // the client is gone
}

// errorPage is the data of error.html.
type errorPage struct {
	Title, Message string
}

func (h *Handler) renderError(w http.ResponseWriter, status int, title, msg string) {
	h.render(w, status, "error.html", errorPage{Title: title, Message: msg})
}

// serveNotFound answers every URL no page has: a 404 page, or JSON under
// /api/ (where clients expect JSON errors).
func (h *Handler) serveNotFound(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "not found: this server has no API endpoint " + r.URL.Path}) //nolint:errcheck // client gone
		return
	}
	h.renderError(w, http.StatusNotFound, "Not found",
		"There is no page at "+r.URL.Path+". A stream's watch page is /watch/<path>; "+
			"it plays over HTTP-FLV at /<path>.flv and over HLS at /<path>/index.m3u8.")
}

// streamInfo is one live stream of the home page and of /streams.json.
type streamInfo struct {
	Path  string `json:"path"`
	Watch string `json:"watch"` // the watch page's URL path
	// Live is false in the grace period after the publisher left.
	Live bool `json:"live"`
	// Viewers is Config.Viewers, or the stream's hub readers.
	Viewers       int      `json:"viewers"`
	Width         int      `json:"width"`
	Height        int      `json:"height"`
	Codecs        []string `json:"codecs"`
	UptimeSeconds int64    `json:"uptimeSeconds"`
}

// Resolution is "640×360", or "" when unknown.
func (s streamInfo) Resolution() string {
	if s.Width <= 0 || s.Height <= 0 {
		return ""
	}
	return strconv.Itoa(s.Width) + "×" + strconv.Itoa(s.Height)
}

// liveStreams returns the hub's streams but the ladder rungs, by path,
// and but those an anonymous visitor may not watch (a read key, signed
// links only): the list is public.
func (h *Handler) liveStreams() []streamInfo {
	out := []streamInfo{}
	for _, s := range h.hub.Streams() {
		if s.Derived() || !h.hub.OpenToRead(s.Path()) {
			continue
		}
		st := s.Stats()
		info := streamInfo{
			Path: st.Path, Watch: "/watch/" + st.Path, Live: st.Publishing, Viewers: st.Readers,
			Codecs: []string{}, UptimeSeconds: int64(st.Uptime / time.Second),
		}
		if h.conf.Viewers != nil {
			info.Viewers = h.conf.Viewers(st.Path)
		}
		for _, t := range s.Tracks() {
			info.Codecs = append(info.Codecs, t.Codec.String())
			if t.IsVideo() && info.Width == 0 {
				info.Width, info.Height = t.Width, t.Height
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// homePage is the data of home.html.
type homePage struct {
	Streams []streamInfo
	Host    string // the host name the browser used, for the ffmpeg example
}

func (h *Handler) serveHome(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		host = hn
	}
	if host == "" {
		host = "HOST"
	}
	h.render(w, http.StatusOK, "home.html", homePage{Streams: h.liveStreams(), Host: host})
}

func (h *Handler) serveStreamsJSON(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	json.NewEncoder(w).Encode(map[string]any{"streams": h.liveStreams()}) //nolint:errcheck // client gone
}

// watchConf is what watch.js and chat.js get, as JSON in the page.
type watchConf struct {
	Path  string   `json:"path"`
	Mode  string   `json:"mode"`  // "webrtc", "hls" or "flv"
	Rung  string   `json:"rung"`  // "" for the source
	Rungs []string `json:"rungs"` // offered in FLV and WebRTC mode after the source
	HLS   string   `json:"hls"`   // the multivariant playlist
	FLV   string   `json:"flv"`   // the source's HTTP-FLV URL
	// WHEP is the source's WHEP endpoint, "" when the server has no WebRTC
	// (Config.WebRTC): then the page has no WebRTC mode.
	WHEP       string      `json:"whep"`
	ICEServers []ICEServer `json:"iceServers"`
	Chat       string      `json:"chat"` // the chat room's URL path
	// KeyQuery is "?key=..." when the page was opened with a read key or
	// a signed play token, added to every URL above and to the rungs'.
	KeyQuery string `json:"keyQuery"`
	// Libs are the player libraries' URLs, "" when missing from the build.
	Libs         map[string]string `json:"libs"`
	Missing      string            `json:"missing"` // what to do when a library is missing
	ChatMaxBytes int               `json:"chatMaxBytes"`
	// Recordings lists the path's recordings (/api/v1/recordings), ""
	// when it is not recorded; Rewind is its rewind playlist and
	// RewindSeconds how far back it reaches.
	Recordings    string  `json:"recordings"`
	Rewind        string  `json:"rewind"`
	RewindSeconds float64 `json:"rewindSeconds"`
}

// watchPage is the data of watch.html.
type watchPage struct {
	Path    string
	Conf    watchConf
	Missing []string
	Hint    string
}

func (h *Handler) serveWatch(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	if err := server.ValidatePath(p); err != nil {
		h.renderError(w, http.StatusNotFound, "No such stream", err.Error())
		return
	}
	if !h.watchable(p) {
		h.renderError(w, http.StatusNotFound, "Not live",
			p+" is not live now. The list of live streams is on the home page; this page works once a publisher is on "+p+".")
		return
	}
	q := r.URL.Query()
	conf := watchConf{
		Path: p, Mode: "hls", HLS: "/" + p + "/index.m3u8", FLV: "/" + p + ".flv", Chat: "/chat/" + p,
		Rungs: h.rungs(p), Libs: map[string]string{}, ChatMaxBytes: h.conf.ChatMaxBytes, ICEServers: []ICEServer{},
	}
	if h.conf.WebRTC {
		conf.WHEP = "/" + p + "/whep"
		conf.ICEServers = append(conf.ICEServers, h.conf.ICEServers...)
	}
	if k := q.Get("key"); k != "" {
		conf.KeyQuery = "?key=" + url.QueryEscape(k)
		conf.HLS += conf.KeyQuery
		conf.FLV += conf.KeyQuery
		conf.Chat += conf.KeyQuery
		if conf.WHEP != "" {
			conf.WHEP += conf.KeyQuery
		}
	}
	if h.conf.Rewind != nil {
		if win := h.conf.Rewind(p); win > 0 {
			v := url.Values{"path": {p}}
			if k := q.Get("key"); k != "" {
				v.Set("key", k)
			}
			conf.Recordings = "/api/v1/recordings?" + v.Encode()
			conf.Rewind = "/api/v1/recordings/rewind.m3u8?" + v.Encode()
			conf.RewindSeconds = win.Seconds()
		}
	}
	// The mode asked for, else WebRTC where the stream's video can go over
	// it (the page falls back to LL-HLS when the browser or the WHEP POST
	// fails), else LL-HLS.
	switch m := q.Get("mode"); {
	case m == "flv":
		conf.Mode = "flv"
	case m == "webrtc" && conf.WHEP != "":
		conf.Mode = "webrtc"
	case m == "" && conf.WHEP != "" && h.webrtcVideo(p):
		conf.Mode = "webrtc"
	}
	if rung := q.Get("rung"); validRung(p, rung) {
		conf.Rung = rung
		if !slices.Contains(conf.Rungs, rung) {
			conf.Rungs = append(conf.Rungs, rung)
		}
	}
	for kind, f := range map[string]string{"hls": "hls.min.js", "flv": "mpegts.js"} {
		if !slices.Contains(h.assets.missing, "web/static/vendor/"+f) {
			conf.Libs[kind] = h.assets.url("vendor/" + f)
		}
	}
	page := watchPage{Path: p, Conf: conf, Missing: h.assets.missing}
	if len(page.Missing) > 0 {
		page.Hint = vendorHint
		conf.Missing = strings.Join(page.Missing, ", ") + " missing from this build: " + vendorHint
		page.Conf = conf
	}
	h.render(w, http.StatusOK, "watch.html", page)
}

// watchable reports whether p has a stream now, is pulled from a source
// (which may start on demand), or is a rung of a live stream's ladder
// (which may start on demand).
func (h *Handler) watchable(p string) bool {
	if h.hub.Stream(p) != nil || h.hub.PathConfig(p).Source != "" {
		return true
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return false
	}
	return h.hub.Stream(p[:i]) != nil && slices.Contains(h.rungs(p[:i]), p[i+1:])
}

// webrtcVideo reports whether p is live with video a browser takes over
// WebRTC as the server sends it (H.264 or AV1; H.265 is rare in browsers).
func (h *Handler) webrtcVideo(p string) bool {
	s := h.hub.Stream(p)
	if s == nil {
		return false
	}
	for _, t := range s.Tracks() {
		if t.IsVideo() {
			return t.Codec == media.CodecH264 || t.Codec == media.CodecAV1
		}
	}
	return false
}

// rungs returns the valid rung names of p's ladder (Config.Renditions).
func (h *Handler) rungs(p string) []string {
	if h.conf.Renditions == nil {
		return []string{}
	}
	out := []string{}
	for _, r := range h.conf.Renditions(p) {
		if validRung(p, r) && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// validRung reports whether rung names a rung of path: one path segment
// ("source" is the source, not a rung).
func validRung(path, rung string) bool {
	return rung != "" && rung != "source" && !strings.Contains(rung, "/") && server.ValidatePath(path+"/"+rung) == nil
}

// broadcastConf is what golive.js and chat.js get, as JSON in the
// broadcast page.
type broadcastConf struct {
	API string `json:"api"` // the streams API: POST creates, GET <api>/<id> has the figures
	// WebRTC says that the server takes WHIP (Config.WebRTC): the page goes
	// live from the browser at /<path>/whip.
	WebRTC     bool        `json:"webrtc"`
	ICEServers []ICEServer `json:"iceServers"`
	// Chat is "": the page joins /chat/<path> once it is live there.
	Chat         string `json:"chat"`
	ChatMaxBytes int    `json:"chatMaxBytes"`
}

// broadcastPage is the data of broadcast.html.
type broadcastPage struct {
	API  string
	Conf broadcastConf
}

func (h *Handler) serveBroadcast(w http.ResponseWriter, r *http.Request) {
	conf := broadcastConf{API: "/api/v1/streams", WebRTC: h.conf.WebRTC, ICEServers: h.conf.ICEServers,
		ChatMaxBytes: h.conf.ChatMaxBytes}
	if conf.ICEServers == nil {
		conf.ICEServers = []ICEServer{}
	}
	h.render(w, http.StatusOK, "broadcast.html", broadcastPage{API: conf.API, Conf: conf})
}
