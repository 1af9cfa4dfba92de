// Package web serves the embedded web pages: for now a list of live streams
// with their URLs.
package web

import (
	"embed"
	"html/template"
	"net/http"
	"sort"

	"github.com/streamhub/streamhub/server"
)

//go:embed index.html
var files embed.FS

// Handler serves the web pages.
type Handler struct {
	hub  *server.Hub
	tmpl *template.Template
}

// New returns the web handler.
func New(hub *server.Hub) *Handler {
	return &Handler{hub: hub, tmpl: template.Must(template.ParseFS(files, "index.html"))}
}

// ServeHTTP serves / and answers 404 with a reason elsewhere.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.Error(w, "not found: streams are at /<path>.flv", http.StatusNotFound)
		return
	}
	var streams []server.StreamStats
	for _, s := range h.hub.Streams() {
		streams = append(streams, s.Stats())
	}
	sort.Slice(streams, func(i, j int) bool { return streams[i].Path < streams[j].Path })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	h.tmpl.Execute(w, map[string]any{"Streams": streams, "Host": r.Host}) //nolint:errcheck // client gone
}
