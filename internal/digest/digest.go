// Package digest holds what the stream registry and the RTSP server share
// about HTTP/RTSP Digest credentials (RFC 2617, MD5): the realm and HA1, so
// a stream key can be checked by Digest while only hashes of it are kept.
package digest

import (
	"crypto/md5" //nolint:gosec // RTSP Digest is MD5 (RFC 2617): what ffmpeg, GStreamer and cameras speak
	"encoding/hex"
)

// Realm is the realm of every RTSP Digest challenge streamhub sends. HA1
// depends on it: changing it invalidates every stored HA1 (the keys would
// have to be rotated).
const Realm = "streamhub"

// HA1 returns MD5(user:Realm:key), the Digest secret of user with key.
func HA1(user, key string) []byte {
	h := md5.Sum([]byte(user + ":" + Realm + ":" + key)) //nolint:gosec // see the import
	return h[:]
}

// Hex returns MD5(s) in lower-case hex, as Digest combines its parts.
func Hex(s string) string {
	h := md5.Sum([]byte(s)) //nolint:gosec // see the import
	return hex.EncodeToString(h[:])
}
