package record

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
)

// hookLoop runs record.onSegmentComplete for each completed segment, one
// at a time (a slow upload delays the next hook, never the recording; a
// full queue drops the hook and counts it).
func (r *Recorder) hookLoop() {
	defer r.wg.Done()
	defer guard.Recover(r.log, "record hook")
	for {
		select {
		case <-r.ctx.Done():
			return
		case s := <-r.hooks:
			if err := r.runHook(s); err != nil {
				r.hookFailures.Add(1)
				r.log.Warn("record: onSegmentComplete failed", "path", s.Path, "file", s.File, "err", guard.Truncate(err.Error()))
			}
		}
	}
}

// hookArgs returns the argv of the command for s: {path}, {file},
// {start} and {duration} replaced in each argument. No shell ever sees
// them.
func hookArgs(argv []string, dir string, s Segment) []string {
	rep := strings.NewReplacer("{path}", s.Path, "{file}", filepath.Join(dir, s.File),
		"{start}", s.Start.Format(time.RFC3339Nano), "{duration}", fmt.Sprintf("%.3f", s.Duration().Seconds()))
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = rep.Replace(a)
	}
	return out
}

// hookBody is the JSON the URL hook posts.
type hookBody struct {
	Path     string    `json:"path"`
	File     string    `json:"file"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Duration float64   `json:"duration"`
	Size     int64     `json:"size"`
}

func (r *Recorder) runHook(s Segment) error {
	h := r.conf.OnSegmentComplete
	if len(h.Command) == 0 && h.URL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, h.Timeout)
	defer cancel()
	if len(h.Command) > 0 {
		args := hookArgs(h.Command, r.dir, s)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", args[0], err, bytes.TrimSpace(out[:min(len(out), 256)]))
		}
	}
	if h.URL != "" {
		body, _ := json.Marshal(hookBody{Path: s.Path, File: filepath.Join(r.dir, s.File), Start: s.Start, End: s.End,
			Duration: s.Duration().Seconds(), Size: s.Size})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: %s", h.URL, resp.Status)
		}
	}
	return nil
}
