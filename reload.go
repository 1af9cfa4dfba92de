package main

// Hot reload: the config file is read again on SIGHUP, on POST
// /api/v1/config/reload and when it changes on disk (reloadwatch.go).
//
//	new file ─ readConfigFile ─┬─ invalid: refused, the running config stays
//	                           └─ mergeHot(running, new): restart-only keys keep
//	                              their running values ("needs restart: ...")
//	                                 │
//	                              live.Store(effective) ─ apply(old, effective)
//
// The hub, the ladder and the RTSP sources read path settings through the
// live pointer at each call, so a new publisher, reader or ladder sees the
// new values while the sessions already running carry on untouched: nobody
// is dropped. What components hold as values (log level, auth hook, HLS
// settings of new muxers) is swapped by apply.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamhub/streamhub/api"
)

// keyClass says how a change of one config key (or every key under a
// prefix) takes effect. The reload and the configuration reference both
// read keyClasses: it is the one place a key is classified.
type keyClass struct {
	key string // a key, or a section: every key under it
	hot bool
	// how says, for the reference, how a hot change applies.
	how string
}

// keyClasses classifies every key of config.yml (TestKeyClassesCoverConfig
// checks that none is missing); the longest matching entry wins.
var keyClasses = []keyClass{
	{key: "log", hot: false},
	{key: "log.level", hot: true, how: "at once"},
	{key: "rtmp"}, {key: "rtsp"}, {key: "srt"}, {key: "http"}, {key: "webrtc"},
	{key: "hls"},
	{key: "hls.partTarget", hot: true, how: "muxers started after the reload"},
	{key: "hls.partHoldBack", hot: true, how: "muxers started after the reload"},
	{key: "hls.segmentMin", hot: true, how: "muxers started after the reload"},
	{key: "hls.window", hot: true, how: "muxers started after the reload"},
	{key: "hls.idleTimeout", hot: true, how: "muxers started after the reload"},
	{key: "transcode"},
	{key: "transcode.ladder", hot: true, how: "ladders started after the reload (a running ladder keeps its rungs)"},
	{key: "transcode.threads", hot: true, how: "FFmpeg processes started after the reload"},
	{key: "transcode.vaapiDevice", hot: true, how: "FFmpeg processes started after the reload"},
	{key: "transcode.maxWorkers", hot: true, how: "ladders started after the reload"},
	{key: "transcode.idleTimeout", hot: true, how: "every ladder, at its next idle check"},
	{key: "transcode.watchdog", hot: true, how: "every FFmpeg process, at its next check"},
	{key: "streams"}, {key: "api"}, {key: "web"}, {key: "limits"},
	// The certificate files are reread when they change (tlscert), without a reload.
	{key: "tls"},
	{key: "auth"},
	{key: "auth.hookURL", hot: true, how: "the next publisher or reader asked"},
	{key: "auth.hookTimeout", hot: true, how: "the next publisher or reader asked"},
	{key: "paths", hot: true, how: "new publishers, readers and sources (sessions running keep theirs)"},
	// The cluster's role, Redis and secret are the node's identity in the cluster.
	{key: "cluster"},
	// The recorder's directory, index and workers are made at start.
	{key: "record"},
	{key: "paths.default.record", hot: true, how: "paths published after the reload, when the server started with a recorded path (else at the next start: the recorder is made at start)"},
	{key: "paths.overrides.record", hot: true, how: "paths published after the reload, when the server started with a recorded path (else at the next start: the recorder is made at start)"},
}

// classOf returns the entry of keyClasses for key ("paths.overrides[2].join"
// is looked up as "paths.overrides.join"), and false when none matches.
func classOf(key string) (keyClass, bool) {
	key = indexRe.ReplaceAllString(key, "")
	var best keyClass
	found := false
	for _, c := range keyClasses {
		if (key == c.key || strings.HasPrefix(key, c.key+".")) && (!found || len(c.key) > len(best.key)) {
			best, found = c, true
		}
	}
	return best, found
}

var indexRe = regexp.MustCompile(`\[\d+\]`)

// isHot reports whether key applies without a restart; an unknown key is
// restart-only.
func isHot(key string) bool {
	c, ok := classOf(key)
	return ok && c.hot
}

// configTree returns c as a YAML mapping node, the form the reload compares
// and merges in (every key present, with its value as in a file).
// Each override is written with its resolved settings: paths.default's
// for the keys it does not give.
func configTree(c *Config) (*yaml.Node, error) {
	cc := *c
	cc.Paths.Overrides = slices.Clone(c.Paths.Overrides)
	for i := range cc.Paths.Overrides {
		if i < len(c.overrides) {
			cc.Paths.Overrides[i].PathConfig = c.overrides[i].conf
		}
	}
	var n yaml.Node
	if err := n.Encode(&cc); err != nil {
		return nil, err
	}
	return &n, nil
}

// flatten returns every leaf of tree by key: "rtmp.address",
// "paths.overrides[0].join". Sequences of mappings (paths.overrides,
// transcode.ladder) are entered; other sequences are one leaf.
func flatten(tree *yaml.Node) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		switch {
		case n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, n.Content[i+1])
			}
		case n.Kind == yaml.SequenceNode && len(n.Content) > 0 && n.Content[0].Kind == yaml.MappingNode:
			for i, c := range n.Content {
				walk(fmt.Sprintf("%s[%d]", prefix, i), c)
			}
		default:
			out[prefix] = flowValue(n)
		}
	}
	walk("", tree)
	return out
}

// configDiff is what a reload changes, by key.
type configDiff struct {
	Hot, Restart []string
}

// diffConfigs returns the keys whose values differ between old and new
// (a key present on one side only differs), sorted and split by class.
func diffConfigs(old, new *yaml.Node) configDiff {
	a, b := flatten(old), flatten(new)
	var d configDiff
	seen := map[string]bool{}
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if seen[k] {
				continue
			}
			seen[k] = true
			va, oka := a[k]
			vb, okb := b[k]
			if oka == okb && va == vb {
				continue
			}
			if isHot(k) {
				d.Hot = append(d.Hot, k)
			} else {
				d.Restart = append(d.Restart, k)
			}
		}
	}
	sort.Strings(d.Hot)
	sort.Strings(d.Restart)
	return d
}

// mergeHot returns the config to run after a reload from running to next
// (both valid): next's hot keys and running's restart-only ones, and what
// changed. A ladder switched on or off (transcode.ladder empty on one side)
// needs a restart: the transcoder decides at start whether it runs.
func mergeHot(running, next *Config) (*Config, configDiff, error) {
	oldTree, err := configTree(running)
	if err != nil {
		return nil, configDiff{}, err
	}
	newTree, err := configTree(next)
	if err != nil {
		return nil, configDiff{}, err
	}
	d := diffConfigs(oldTree, newTree)
	if (len(running.Transcode.Ladder) == 0) != (len(next.Transcode.Ladder) == 0) {
		d.Hot = slices.DeleteFunc(d.Hot, func(k string) bool { return strings.HasPrefix(k, "transcode.ladder") })
		d.Restart = append(d.Restart, "transcode.ladder")
		setNode(newTree, "transcode.ladder", lookupNode(oldTree, "transcode.ladder"))
	}
	if len(d.Restart) == 0 {
		return next, d, nil
	}
	// Put the running values of the restart-only keys in the new tree.
	// Restart-only keys are never inside a sequence (paths.overrides and
	// transcode.ladder are hot), so each is a mapping path in both trees.
	for _, k := range d.Restart {
		if n := lookupNode(oldTree, k); n != nil {
			setNode(newTree, k, n)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(newTree); err != nil {
		return nil, d, err
	}
	eff, err := loadConfig(buf.Bytes())
	if err != nil {
		return nil, d, err
	}
	if errs := eff.Validate(); len(errs) > 0 {
		return nil, d, fmt.Errorf("config: the new hot keys do not fit the running restart-only ones: %w", errors.Join(errs...))
	}
	return eff, d, nil
}

// lookupNode returns the value node of a dotted mapping key, or nil.
func lookupNode(tree *yaml.Node, key string) *yaml.Node {
	n := tree
	for _, part := range strings.Split(key, ".") {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				next = n.Content[i+1]
				break
			}
		}
		n = next
	}
	return n
}

// setNode replaces the value node of a dotted mapping key that exists.
func setNode(tree *yaml.Node, key string, v *yaml.Node) {
	dot := strings.LastIndexByte(key, '.')
	parent, last := tree, key
	if dot >= 0 {
		parent, last = lookupNode(tree, key[:dot]), key[dot+1:]
	}
	if parent == nil || parent.Kind != yaml.MappingNode || v == nil {
		return
	}
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == last {
			parent.Content[i+1] = v
			return
		}
	}
}

// reloader reloads the config file and keeps the outcome of the last
// reload for the API and /metrics. Its methods are safe for concurrent use.
type reloader struct {
	file  string // "" runs on the embedded defaults: nothing to reload
	live  *atomic.Pointer[Config]
	apply func(old, cur *Config) // swaps what components hold as values
	log   *slog.Logger

	mu       sync.Mutex // mu serializes reloads and guards status and lastSum
	status   api.ReloadStatus
	lastSum  [sha256.Size]byte // of the file last read, for the watcher
	ok, fail atomic.Uint64
}

// newReloader returns a reloader of file into live.
func newReloader(file string, live *atomic.Pointer[Config], apply func(old, cur *Config), log *slog.Logger) *reloader {
	r := &reloader{file: file, live: live, apply: apply, log: log}
	r.status = api.ReloadStatus{OK: true}
	if file != "" {
		if data, err := os.ReadFile(file); err == nil {
			r.lastSum = sha256.Sum256(data)
		}
	}
	return r
}

// Reload reads the file again and applies its hot keys (api.Reloader).
// trigger says who asked: signal, api or file.
func (r *reloader) Reload(trigger string) api.ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked(trigger, false)
}

// reloadIfChanged reloads when the file's content differs from the last
// read: the watcher sees events for every file of the directory.
func (r *reloader) reloadIfChanged() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reloadLocked("file", true)
}

func (r *reloader) reloadLocked(trigger string, onlyIfChanged bool) api.ReloadStatus {
	st := api.ReloadStatus{Trigger: trigger, At: time.Now()}
	next, err := r.read(onlyIfChanged)
	if next == nil && err == nil {
		return r.status // unchanged
	}
	var d configDiff
	if err == nil {
		old := r.live.Load()
		var eff *Config
		if eff, d, err = mergeHot(old, next); err == nil {
			r.live.Store(eff)
			r.apply(old, eff)
		}
	}
	st.Applied, st.NeedsRestart = d.Hot, d.Restart
	if err != nil && onlyIfChanged && !r.status.OK && r.status.Error == err.Error() {
		// The watcher sees every event of the directory: a file still
		// missing is one failure, logged once, not one per event.
		return r.status
	}
	if err != nil {
		st.Error = err.Error()
		r.fail.Add(1)
		r.log.Error("config reload refused; the running config stays", "trigger", trigger, "file", r.file, "err", err)
	} else {
		st.OK = true
		r.ok.Add(1)
		r.log.Info("config reloaded", "trigger", trigger, "file", r.file, "applied", strings.Join(d.Hot, ", "))
		if len(d.Restart) > 0 {
			r.log.Warn("needs restart: "+strings.Join(d.Restart, ", "), "file", r.file)
		}
	}
	st.Successes, st.Failures = r.ok.Load(), r.fail.Load()
	r.status = st
	return st
}

// read returns the new config, or nil and nil when onlyIfChanged and the
// file has the content last read.
func (r *reloader) read(onlyIfChanged bool) (*Config, error) {
	if r.file == "" {
		return nil, errors.New("config: streamhub runs on the embedded defaults (no --config file): nothing to reload")
	}
	data, err := os.ReadFile(r.file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if onlyIfChanged {
			// The watcher read between a save's truncation and its
			// write (os.WriteFile, an editor saving in place): the
			// write's own event brings the next read. Applied, the
			// empty file would have reset every setting.
			return nil, nil
		}
		return nil, errors.New("config: the file is empty (an empty config would reset every setting to its default)")
	}
	sum := sha256.Sum256(data)
	if onlyIfChanged && sum == r.lastSum {
		return nil, nil
	}
	r.lastSum = sum
	c, err := loadConfig(data)
	if err != nil {
		return nil, err
	}
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("config: %d problem(s): %w", len(errs), errors.Join(errs...))
	}
	return c, nil
}

// LastReload returns the outcome of the last reload (api.Reloader).
func (r *reloader) LastReload() api.ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	st.Successes, st.Failures = r.ok.Load(), r.fail.Load()
	return st
}
