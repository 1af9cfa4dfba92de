package hls

import (
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"time"
)

// What a shared cache in front of the server (Varnish, nginx, a CDN) may
// do with each response; docs/caching.md has the table and the recipes.
//
//   - init, part and segment files: their names are unique per muxer and
//     never reused, so they are immutable (ccFile). The preload-hinted
//     part is answered when it exists, with the same header.
//   - a playlist answered to a delivery directive (_HLS_msn, _HLS_part,
//     _HLS_skip): its URL names the part it waited for, so every viewer
//     asking for it may get the same answer for a few part targets
//     (blockingCacheControl). One origin request per playlist version.
//   - the plain media playlist (no directive): a player starts there, and
//     one that is a part old starts a part late: no-cache (the Varnish
//     recipe keeps it for half a part, to coalesce a join storm).
//   - the multivariant playlist: it changes when a rung comes up (ccShort).
//   - 400, 404 and 503, and a blocking request that ran out of time: a
//     second at most (ccShort), so that a storm of players asking for a
//     stream that is not live costs one origin request a second and an
//     answer is never stale for longer.
//   - refusals (401, 403) and anything else: never stored (ccNever).
const (
	ccFile  = "public, max-age=3600, immutable"
	ccPlain = "no-cache"
	ccShort = "public, max-age=1"
	ccNever = "no-store"
)

// blockingCacheControl is the Cache-Control of a playlist answered to a
// delivery directive: three part targets, at least a second (max-age
// counts whole seconds).
func blockingCacheControl(partTarget time.Duration) string {
	return fmt.Sprintf("public, max-age=%d", max(1, int(math.Ceil((3*partTarget).Seconds()))))
}

// errorCacheControl is the Cache-Control of an error response.
func errorCacheControl(code int) string {
	switch code {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusServiceUnavailable:
		return ccShort
	}
	return ccNever
}

// Response kinds, counted by Handler.Responses (streamhub_hls_responses_total).
const (
	KindMultivariant = "multivariant"
	KindPlaylist     = "playlist"          // the plain media playlist
	KindBlocking     = "playlist_blocking" // answered to _HLS_msn
	KindInit         = "init"
	KindPart         = "part"
	KindSegment      = "segment"
	KindError        = "error"   // 400, 404, 405, 503, and a blocking request that ran out of time
	KindRefused      = "refused" // 401, 403
)

// Kinds lists the response kinds in a stable order.
var Kinds = []string{KindMultivariant, KindPlaylist, KindBlocking, KindInit, KindPart, KindSegment, KindError, KindRefused}

// responseCounts counts the responses by kind: what reached the origin,
// the figure a cache in front of it divides.
type responseCounts [8]atomic.Uint64

func (c *responseCounts) add(kind string) {
	for i, k := range Kinds {
		if k == kind {
			c[i].Add(1)
			return
		}
	}
}

// Responses returns how many responses of each kind (Kinds) the handler
// has written since it started, and how many media playlists it rendered
// (each version once per delta flag and share value, however many
// players asked).
func (h *Handler) Responses() (byKind map[string]uint64, renders uint64) {
	byKind = make(map[string]uint64, len(Kinds))
	for i, k := range Kinds {
		byKind[k] = h.counts[i].Load()
	}
	return byKind, h.renders.Load()
}

// fail answers an error with its Cache-Control and counts it.
func (h *Handler) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Cache-Control", errorCacheControl(code))
	kind := KindError
	if code == http.StatusUnauthorized || code == http.StatusForbidden {
		kind = KindRefused
	}
	h.counts.add(kind)
	http.Error(w, msg, code)
}
