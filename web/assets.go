package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
)

// files holds the page templates and the static files. static/vendor holds
// the player libraries once `npm ci` ran in web/ (it is gitignored but for
// its README, so the package builds before npm ran).
//
//go:embed templates static
var files embed.FS

// vendorFiles are the player libraries the watch page loads from
// static/vendor, as vendor.mjs names them.
var vendorFiles = []string{"hls.min.js", "mpegts.js"}

// vendorHint says how to put the player libraries into the binary.
const vendorHint = "run scripts/run.sh (or `npm ci` in web/, then build again): " +
	"it copies hls.js and mpegts.js from npm into web/static/vendor, which the binary embeds"

// assets serves static/ at /static/. URLs made by url carry a hash of all
// the files (?v=), so a browser may keep them for a year: a new build has
// new URLs.
type assets struct {
	fs      fs.FS
	version string
	files   http.Handler
	missing []string // vendorFiles absent from this build
}

// newAssets serves the static directory of fsys (the embedded files, or
// a test's).
func newAssets(fsys fs.FS) *assets {
	sub, err := fs.Sub(fsys, "static")
	if err != nil {
		panic(err) // fs.Sub fails only for an invalid name
	}
	a := &assets{fs: sub, files: http.StripPrefix("/static", http.FileServerFS(sub))}
	h := sha256.New()
	var names []string
	fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error { //nolint:errcheck // embedded: no errors
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, n := range names {
		b, _ := fs.ReadFile(sub, n)
		h.Write([]byte(n))
		h.Write(b)
	}
	a.version = hex.EncodeToString(h.Sum(nil))[:12]
	for _, f := range vendorFiles {
		if _, err := fs.Stat(sub, path.Join("vendor", f)); err != nil {
			a.missing = append(a.missing, "web/static/vendor/"+f)
		}
	}
	return a
}

// missingVendor returns the player libraries missing from this build.
func (a *assets) missingVendor() []string { return a.missing }

// url returns the versioned URL of a file of static/.
func (a *assets) url(name string) string { return "/static/" + name + "?v=" + a.version }

// ServeHTTP serves a file of static/; a directory or a missing file is a
// 404 that says, for a player library, how to install it.
func (a *assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	if st, err := fs.Stat(a.fs, name); err != nil || st.IsDir() {
		msg := "not found: /static/" + name
		if strings.HasPrefix(name, "vendor/") {
			msg += " is not in this build; " + vendorHint
		}
		http.Error(w, msg, http.StatusNotFound)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("v") == a.version {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	a.files.ServeHTTP(w, r)
}
