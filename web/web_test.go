package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

func TestIndexListsStreamsAndEscapes(t *testing.T) {
	hub := server.NewHub(server.HubConfig{})
	defer hub.Close()
	p, err := hub.Publish("live/test", []*media.Track{{Codec: media.CodecAAC}}, server.PublishOptions{Protocol: "rtmp", Remote: "<b>1.2.3.4</b>"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srv := httptest.NewServer(New(hub))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != 200 || !strings.Contains(page, `href="/live/test.flv"`) {
		t.Fatalf("status %d, page does not link the stream:\n%s", resp.StatusCode, page)
	}
	if strings.Contains(page, "<b>1.2.3.4</b>") {
		t.Fatal("publisher address is not HTML-escaped")
	}

	resp, err = http.Get(srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown page: status %d, want 404", resp.StatusCode)
	}
}
