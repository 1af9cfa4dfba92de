package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
)

// A registry that cannot answer (its database down) refuses the publisher
// with its reason, not as a wrong key: the address spends no failure, so
// it publishes as soon as the registry answers again.
func TestPublishRegistryUnavailable(t *testing.T) {
	down := true
	hub := NewHub(HubConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AuthFailures: guard.NewBudget(2, time.Hour),
		ResolvePublish: func(path, key string) (string, string, bool, error) {
			if down {
				return "", "", false, fmt.Errorf("%w: the stream registry did not answer", ErrUnavailable)
			}
			return path, key, true, nil
		}})
	defer hub.Close()
	peer := PublishRequest{Peer: Peer{Protocol: "rtmp", Remote: "192.0.2.1:5000"}}
	for range 5 { // more than the budget
		_, err := hub.Publish(context.Background(), "live/x", peer)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnauthorized) || err.Error() != "server: unavailable: the stream registry did not answer" {
			t.Fatalf("registry down: %v", err)
		}
	}
	down = false
	c, err := hub.Publish(context.Background(), "live/x", peer)
	if err != nil {
		t.Fatalf("registry back: %v (the address was throttled?)", err)
	}
	c.Release()
}
