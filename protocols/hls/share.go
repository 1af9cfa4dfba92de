package hls

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A shared value stands in for the viewer's credential in every URI a
// playlist hands out, so that a cache in front of the server keeps one
// entry per part and playlist version, not one per viewer:
//
//	GET /live/x/index.m3u8?key=<the viewer's read key or signed link>   the hub's checks
//	    → stream.m3u8?share=<exp>.<mac>                                  the same for every viewer of live/x
//	GET /live/x/stream.m3u8?share=…&_HLS_msn=…, …part8.2.mp4?share=…    the share's check alone
//
// mac is an HMAC-SHA256 of the scope (the source path: its ladder rungs
// share its value) and exp, with a key that never leaves the server. exp
// is the end of the window after the current one (shareWindow), so a
// share handed out now stays valid for one to two windows, and every
// viewer who opens the path in the same window gets the same value.
// Playlists always hand out the current window's value, whatever value
// opened them: parts and segments have one URL for every viewer.

// shareParam is the query parameter that carries a share.
const shareParam = "share"

// Errors of a share's check: both are answered 403 without the refusal
// delay or a failure spent (a 128-bit MAC cannot be guessed; behind a
// cache every request comes from the cache's address, whose budget a
// forger would spend for every viewer).
var (
	ErrShareInvalid = errors.New("hls: the share value is not valid for this stream: reload index.m3u8 with your key")
	ErrShareExpired = errors.New("hls: the share value has expired: reload index.m3u8 with your key")
)

// shares makes and checks share values.
type shares struct {
	key    []byte
	window time.Duration
}

// newShares derives the MAC key from secret (the server's play-link
// secret, so that values survive a restart), or draws one when secret is
// empty.
func newShares(secret string, window time.Duration) *shares {
	key := make([]byte, 32)
	if secret == "" {
		rand.Read(key) //nolint:errcheck // never fails on Linux
	} else {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("streamhub hls share v1"))
		key = m.Sum(nil)
	}
	return &shares{key: key, window: max(window, time.Second)}
}

func (s *shares) mac(scope string, exp int64) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(scope + "\n" + strconv.FormatInt(exp, 10)))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// value returns the share of scope handed out at now.
func (s *shares) value(scope string, now time.Time) string {
	w := int64(s.window / time.Second)
	exp := (now.Unix()/w + 2) * w
	return strconv.FormatInt(exp, 10) + "." + s.mac(scope, exp)
}

// query returns the query a playlist's URIs carry: "?share=<value>".
func (s *shares) query(scope string, now time.Time) string {
	return "?" + shareParam + "=" + url.QueryEscape(s.value(scope, now))
}

// check returns nil when v is a share of scope that has not expired at
// now, ErrShareExpired or ErrShareInvalid otherwise.
func (s *shares) check(scope, v string, now time.Time) error {
	es, sig, ok := strings.Cut(v, ".")
	exp, err := strconv.ParseInt(es, 10, 64)
	// Only the canonical form: one URL per value for a cache.
	if !ok || err != nil || es != strconv.FormatInt(exp, 10) || len(sig) != 32 || !hmac.Equal([]byte(sig), []byte(s.mac(scope, exp))) {
		return ErrShareInvalid
	}
	if now.Unix() >= exp {
		return ErrShareExpired
	}
	return nil
}
