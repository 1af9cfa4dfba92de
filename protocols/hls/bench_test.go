package hls

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// The request paths of a player, served in-process (no sockets): what one
// request costs the handler, from the authorization to the body.
//
//	go test -run XXX -bench . -benchmem ./protocols/hls/

// benchLive is a live H264+AAC stream with a running muxer and a full
// window of segments.
func benchLive(b *testing.B) *live {
	l := startLive(b, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond)
	l.publishSync(8 * time.Second)
	return l
}

// serveBench serves target b.N times and fails on another status than 200.
func serveBench(b *testing.B, l *live, target string) {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		l.h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
		}
	}
}

// BenchmarkMediaPlaylist: the media playlist as every player of a version
// gets it (rendered once per change).
func BenchmarkMediaPlaylist(b *testing.B) { serveBench(b, benchLive(b), "/live/x/stream.m3u8") }

// BenchmarkMediaPlaylistKey: the media playlist with a read key in the
// URIs, rendered per request.
func BenchmarkMediaPlaylistKey(b *testing.B) {
	serveBench(b, benchLive(b), "/live/x/stream.m3u8?key=k1")
}

// BenchmarkMediaPlaylistBlocking: a blocking reload for a part that exists
// (of the newest complete segment)
// (the answer is immediate).
func BenchmarkMediaPlaylistBlocking(b *testing.B) {
	l := benchLive(b)
	serveBench(b, l, "/live/x/stream.m3u8?_HLS_msn="+strconv.FormatUint(l.nextMSN()-2, 10)+"&_HLS_part=0")
}

var listedPartRE = regexp.MustCompile(`#EXT-X-PART:.*URI="([^"?]*part\d+\.\d+\.mp4)"`)

// BenchmarkPart: the newest listed part.
func BenchmarkPart(b *testing.B) {
	l := benchLive(b)
	parts := listedPartRE.FindAllStringSubmatch(l.get("stream.m3u8").body, -1)
	if len(parts) == 0 {
		b.Fatal("no part listed")
	}
	serveBench(b, l, "/live/x/"+parts[len(parts)-1][1])
}

// BenchmarkMultivariant: the multivariant playlist (no ladder).
func BenchmarkMultivariant(b *testing.B) { serveBench(b, benchLive(b), "/live/x/index.m3u8") }
