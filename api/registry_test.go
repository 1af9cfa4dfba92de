package api

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamhub/streamhub/registry"
	"github.com/streamhub/streamhub/server"
)

// downRegistry is a registry whose database does not answer.
type downRegistry struct{ *registry.Bolt }

var errDown = fmt.Errorf("%w: the stream registry did not answer", registry.ErrUnavailable)

func (downRegistry) Get(string) (registry.Stream, error) { return registry.Stream{}, errDown }
func (downRegistry) List() ([]registry.Stream, error)    { return nil, errDown }
func (downRegistry) Create(string) (registry.Stream, string, error) {
	return registry.Stream{}, "", errDown
}
func (downRegistry) Health() registry.Health {
	return registry.Health{Backend: "postgres", Error: "connection refused"}
}

// A registry that does not answer: 503 with the reason (not a 404 nor a
// wrong key), its health in /info and in /metrics.
func TestRegistryDown(t *testing.T) {
	bolt, err := registry.Open(filepath.Join(t.TempDir(), "s.db"), "live", true)
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	reg := downRegistry{bolt}
	const admin = "0123456789abcdef"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := server.NewHub(server.HubConfig{Logger: log})
	defer hub.Close()
	e := &env{hub: hub, reg: bolt}
	srv := httptest.NewServer(New(Config{Version: "test", AdminToken: admin}, hub, reg, nil, log))
	defer srv.Close()
	e.url = srv.URL
	var fail struct{ Error string }
	for _, c := range []struct{ method, path string }{{"GET", "/api/v1/streams"}, {"GET", "/api/v1/streams/abc"},
		{"POST", "/api/v1/streams"}, {"DELETE", "/api/v1/streams/abc"}} {
		if code := e.do(t, c.method, c.path, admin, `{"name":"x"}`, &fail); code != http.StatusServiceUnavailable ||
			!strings.Contains(fail.Error, "did not answer") {
			t.Errorf("%s %s: %d %q", c.method, c.path, code, fail.Error)
		}
	}
	var info struct {
		Registry          registry.Health
		RegisteredStreams *int
	}
	if code := e.do(t, "GET", "/api/v1/info", admin, "", &info); code != 200 || info.Registry.Up || info.Registry.Backend != "postgres" ||
		info.Registry.Error == "" || info.RegisteredStreams != nil {
		t.Fatalf("info: %d %+v", code, info)
	}

	for _, c := range []struct {
		reg  registry.Registry
		want string
	}{{reg, `streamhub_registry_up{backend="postgres"} 0`}, {bolt, `streamhub_registry_up{backend="bbolt"} 1`}} {
		m := httptest.NewServer(Metrics(hub, nil, nil, RegistryCollector(c.reg)))
		resp, err := http.Get(m.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m.Close()
		if !strings.Contains(string(b), c.want) {
			t.Errorf("/metrics lacks %s", c.want)
		}
	}
}
