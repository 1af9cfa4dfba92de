package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// notifyHUP returns the channel of SIGHUP and its stop function. runServe
// calls it first thing, so a SIGHUP while the listeners start (whose
// default action ends the process) waits for the reload instead.
func notifyHUP() (<-chan os.Signal, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// reloadDebounce is how long the watcher waits after the last event in the
// config file's directory before reading it: an editor's save or a
// Kubernetes ConfigMap swap is a burst of events.
const reloadDebounce = 200 * time.Millisecond

// watchReload reloads r on SIGHUP and when the config file's directory
// changes, until ctx is done. It watches the directory, not the file:
// editors save by renaming a new file over the old one and ConfigMaps swap
// a symlink, either of which ends a watch on the file itself. Any event in
// the directory counts (a ConfigMap swap never names the file); the
// reloader compares the content and ignores an unchanged file. hup
// carries SIGHUP (notifyHUP); done is closed when it returns.
func watchReload(ctx context.Context, r *reloader, hup <-chan os.Signal, done chan<- struct{}) {
	defer close(done)

	var events <-chan fsnotify.Event
	var errs <-chan error
	if r.file != "" {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(filepath.Dir(r.file))
		}
		if err != nil {
			r.log.Warn("config file not watched: reload with SIGHUP or the API", "file", r.file, "err", err)
		} else {
			defer w.Close()
			events, errs = w.Events, w.Errors
		}
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.Reload("signal")
		case <-events:
			debounce.Reset(reloadDebounce)
		case err := <-errs:
			r.log.Warn("config file watch", "file", r.file, "err", err)
		case <-debounce.C:
			r.reloadIfChanged()
		}
	}
}
