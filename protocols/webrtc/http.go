package webrtc

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/protocols/internal/httperr"
	"github.com/streamhub/streamhub/server"
)

// The endpoints, for a stream path P:
//
//	POST   /P/whip        offer → 201 answer, Location /P/whip/<id>, ETag
//	POST   /P/whep        the same for a viewer
//	PATCH  /P/whip/<id>   trickle-ice-sdpfrag: candidates (204) or an ICE restart (200 + fragment)
//	DELETE /P/whip/<id>   ends the session
//	OPTIONS any of them   CORS preflight and the ICE servers (Link)

// Kinds of session.
const (
	kindWHIP = "whip"
	kindWHEP = "whep"
)

// maxOfferBytes bounds an SDP offer; a browser's is about 5 KB.
const maxOfferBytes = 64 << 10

// Match splits a WHIP/WHEP URL path into the stream path, the kind
// ("whip" or "whep") and the session id ("" for the endpoint itself).
func Match(urlPath string) (path, kind, id string, ok bool) {
	p := strings.Trim(urlPath, "/")
	if i := strings.LastIndexByte(p, '/'); i > 0 && isID(p[i+1:]) {
		p, id = p[:i], p[i+1:]
	}
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "", "", "", false
	}
	switch kind = p[i+1:]; kind {
	case kindWHIP, kindWHEP:
		return p[:i], kind, id, true
	}
	return "", "", "", false
}

// IsWebRTC reports whether urlPath is a WHIP or WHEP URL (for the router).
func IsWebRTC(urlPath string) bool {
	_, _, _, ok := Match(urlPath)
	return ok
}

func isID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ServeHTTP serves the WHIP and WHEP endpoints and their sessions.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, kind, id, ok := Match(r.URL.Path)
	if !ok {
		http.Error(w, "not a WHIP or WHEP URL: use /<path>/whip or /<path>/whep", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch")
	allow := "OPTIONS, POST"
	if id != "" {
		allow = "OPTIONS, PATCH, DELETE"
	}
	switch {
	case r.Method == http.MethodOptions:
		h.Set("Allow", allow)
		h.Set("Access-Control-Allow-Methods", allow)
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		h.Set("Access-Control-Max-Age", "86400")
		if id == "" {
			h.Set("Accept-Post", "application/sdp")
			s.setLinks(h)
		} else {
			h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
		}
		w.WriteHeader(http.StatusNoContent)
	case id == "" && r.Method == http.MethodPost:
		s.post(w, r, path, kind)
	case id != "" && r.Method == http.MethodPatch:
		s.patch(w, r, path, kind, id)
	case id != "" && r.Method == http.MethodDelete:
		ss := s.lookup(id, kind, path)
		if ss == nil {
			http.Error(w, errNoSession.Error(), http.StatusNotFound)
			return
		}
		ss.end(errDeleted)
		w.WriteHeader(http.StatusOK)
	default:
		h.Set("Allow", allow)
		http.Error(w, "method not allowed: use "+allow, http.StatusMethodNotAllowed)
	}
}

// errDeleted is a session's end cause after a DELETE.
var errDeleted = errors.New("webrtc: ended by the client (DELETE)")

// setLinks adds the ICE servers as Link headers (RFC 9725 section 4.6).
func (s *Server) setLinks(h http.Header) {
	for _, is := range s.conf.ICEServers {
		for _, u := range is.URLs {
			l := "<" + u + `>; rel="ice-server"`
			if is.Username != "" {
				l += fmt.Sprintf(`; username=%q; credential=%q; credential-type="password"`, is.Username, is.Credential)
			}
			h.Add("Link", l)
		}
	}
}

// keyOf returns the stream key: Authorization: Bearer (what OBS sends),
// else ?key=.
func keyOf(r *http.Request) string {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return r.URL.Query().Get("key")
}

// readBody reads a request body of at most limit bytes of contentType.
// It answers the request itself (415, 413) and returns ok false on error.
func readBody(w http.ResponseWriter, r *http.Request, contentType string, limit int64) (string, bool) {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), contentType) {
		http.Error(w, "Content-Type must be "+contentType, http.StatusUnsupportedMediaType)
		return "", false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return "", false
	}
	if int64(len(b)) > limit {
		http.Error(w, fmt.Sprintf("body larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
		return "", false
	}
	return string(b), true
}

// refuse answers a refused POST and logs it (summarized per address).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, kind, path string, status int, err error) {
	s.hub.LogRefusal(s.log, r.RemoteAddr, kind+" "+strconv.Itoa(status), "session refused", "kind", kind,
		"path", server.LogPath(path), "remote", r.RemoteAddr, "status", status, "reason", guard.Truncate(err.Error()))
	http.Error(w, err.Error(), status)
}

// hubStatus maps a hub refusal to its status: 409 for a busy path.
func hubStatus(err error) int {
	if errors.Is(err, server.ErrPathBusy) || errors.Is(err, server.ErrRungPath) {
		return http.StatusConflict
	}
	if errors.Is(err, server.ErrBadRole) {
		return http.StatusBadRequest
	}
	return httperr.Status(err)
}

// post opens a WHIP or WHEP session.
func (s *Server) post(w http.ResponseWriter, r *http.Request, path, kind string) {
	offer, ok := readBody(w, r, "application/sdp", maxOfferBytes)
	if !ok {
		return
	}
	peer := server.Peer{Protocol: "webrtc", Remote: r.RemoteAddr, Query: r.URL.RawQuery}
	var (
		ss  *session
		err error
	)
	if kind == kindWHIP {
		ss, err = s.newWHIP(r, path, keyOf(r), peer, offer)
	} else {
		ss, err = s.newWHEP(r, path, keyOf(r), peer, offer)
	}
	if err != nil {
		var re *requestError
		status := hubStatus(err)
		if errors.As(err, &re) {
			status = re.status
		}
		s.refuse(w, r, kind, path, status, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/"+ss.path+"/"+kind+"/"+ss.id)
	h.Set("ETag", ss.etag())
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	s.setLinks(h)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, ss.answer) //nolint:errcheck // the session times out if the client never gets it
}

// requestError is a refusal with its HTTP status (a bad offer).
type requestError struct {
	status int
	err    error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, err: fmt.Errorf(format, args...)}
}

// patch applies a trickle-ice-sdpfrag to a session.
func (s *Server) patch(w http.ResponseWriter, r *http.Request, path, kind, id string) {
	ss := s.lookup(id, kind, path)
	if ss == nil {
		http.Error(w, errNoSession.Error(), http.StatusNotFound)
		return
	}
	body, ok := readBody(w, r, "application/trickle-ice-sdpfrag", maxFragBytes)
	if !ok {
		return
	}
	frag, err := parseSDPFrag(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	match := r.Header.Get("If-Match")
	res, err := ss.patch(frag, match)
	switch {
	case errors.Is(err, errETag):
		http.Error(w, err.Error(), http.StatusPreconditionFailed)
	case errors.Is(err, errNoSession):
		http.Error(w, err.Error(), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	case res == "":
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Content-Type", "application/trickle-ice-sdpfrag")
		w.Header().Set("ETag", ss.etag())
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, res) //nolint:errcheck // the client retries the restart
	}
}
