package rtsp

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"

	"github.com/streamhub/streamhub/internal/digest"
)

// RTSP credentials. A path's key may be given as the RTSP password, by
// Digest (RFC 2617 MD5, what ffmpeg, GStreamer and cameras send once
// challenged) or by Basic (accepted when a client sends it unasked; never
// offered, it carries the key in clear). streamhub challenges with its own
// realm (digest.Realm) and a nonce per connection, and checks the answer
// itself: gortsplib's check needs the password in clear, and a registered
// stream's key is kept only as hashes (SHA-256 for the key itself, HA1 for
// Digest), so the answer is checked against HA1.
//
//   - a key from the config (paths.*.publishKey, readKey): any user name;
//     HA1 = MD5(user:realm:key) is made from the key per request;
//   - a registered stream (streams.*): the user name is the stream id,
//     checked against the HA1 the registry stored with the key.

// credential is what a password is checked against: a key in clear (any
// user name) or a stored HA1 (for user alone).
type credential struct {
	key  string // the key in clear ("" when ha1 is set)
	user string // with ha1: the only user name it is for
	ha1  []byte // MD5(user:digest.Realm:key)
}

// connAuth is a connection's Digest state (ServerConn user data).
type connAuth struct {
	nonce string
}

func newNonce() string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck // never fails on Linux
	return hex.EncodeToString(b[:])
}

// challenge is the WWW-Authenticate header of a 401 on a connection with
// nonce: Digest MD5 alone.
func challenge(nonce string) base.HeaderValue {
	alg := headers.AuthAlgorithmMD5
	return headers.Authenticate{Method: headers.AuthMethodDigest, Realm: digest.Realm, Nonce: nonce, Algorithm: &alg}.Marshal()
}

// checkAuth checks the request's Authorization header against the
// credentials cs, for a connection whose nonce is nonce. It returns the
// user name the client gave (for the log; "" if none could be read), and
// the index of the credential that matched, -1 if none.
func checkAuth(req *base.Request, nonce string, cs []credential) (string, int) {
	v, ok := req.Header["Authorization"]
	if !ok || len(v) != 1 {
		return "", -1
	}
	var a headers.Authorization
	if a.Unmarshal(v) != nil {
		return "", -1
	}
	for i, c := range cs {
		if c.matches(req, nonce, &a) {
			return a.Username, i
		}
	}
	return a.Username, -1
}

// matches reports whether a answers for c.
func (c credential) matches(req *base.Request, nonce string, a *headers.Authorization) bool {
	if c.ha1 != nil && a.Username != c.user {
		return false
	}
	switch a.Method {
	case headers.AuthMethodBasic:
		if c.ha1 != nil {
			return subtle.ConstantTimeCompare(digest.HA1(a.Username, a.BasicPass), c.ha1) == 1
		}
		return c.key != "" && subtle.ConstantTimeCompare([]byte(a.BasicPass), []byte(c.key)) == 1
	case headers.AuthMethodDigest:
		if a.Algorithm != nil && *a.Algorithm != headers.AuthAlgorithmMD5 {
			return false
		}
		if nonce == "" || a.Nonce != nonce || a.Realm != digest.Realm || req.URL == nil || !uriMatches(req.URL, a.URI, req.Method == base.Setup) {
			return false
		}
		ha1 := c.ha1
		if ha1 == nil {
			if c.key == "" {
				return false
			}
			ha1 = digest.HA1(a.Username, c.key)
		}
		want := digest.Hex(hex.EncodeToString(ha1) + ":" + nonce + ":" + digest.Hex(string(req.Method)+":"+a.URI))
		return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(a.Response))) == 1
	}
	return false
}

var controlAttribute = regexp.MustCompile("^(.+/)trackID=[0-9]+$")

// uriMatches reports whether the Digest uri is the request's URL: absolute
// or its path (RFC 2617 3.2.2 allows both); in a SETUP also the stream's
// base URL, which VLC and others sign instead of the track's (as
// gortsplib's own check does).
func uriMatches(u *base.URL, got string, setup bool) bool {
	if got == u.String() || (strings.HasPrefix(got, "/") && got == u.RequestURI()) {
		return true
	}
	if setup {
		if m := controlAttribute.FindStringSubmatch(u.String()); m != nil && (got == m[1] || got+"/" == m[1]) {
			return true
		}
	}
	return false
}
