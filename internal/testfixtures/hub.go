package testfixtures

import (
	"testing"
	"time"

	"github.com/streamhub/streamhub/server"
)

// WaitPublished waits up to 5 s until path has a live publisher on hub.
func WaitPublished(t testing.TB, hub *server.Hub, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st := hub.Stream(path); st != nil && st.Stats().Publishing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not published after 5s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
