package registry

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// backend is a Registry implementation under test: newDB makes an empty
// database and returns where it is, open opens it (again).
type backend struct {
	name  string
	newDB func(t *testing.T) string
	open  func(t *testing.T, db string, openPublish bool) Registry
	// raw returns everything the database holds, to look for keys in
	// clear.
	raw func(t *testing.T, db string) string
}

var boltBackend = backend{
	name:  "bbolt",
	newDB: func(t *testing.T) string { return filepath.Join(t.TempDir(), "s.db") },
	open: func(t *testing.T, db string, openPublish bool) Registry {
		t.Helper()
		r, err := Open(db, "live", openPublish)
		if err != nil {
			t.Fatal(err)
		}
		return r
	},
	raw: func(t *testing.T, db string) string { b, _ := os.ReadFile(db); return string(b) },
}

// contract is every test each backend passes.
var contract = []struct {
	name string
	test func(t *testing.T, b backend)
}{
	{"CreateRotateDeletePersist", testCreateRotateDeletePersist},
	{"Resolve", testResolve},
	{"ResolveSubpathsAndDeleted", testResolveSubpathsAndDeleted},
}

func runContract(t *testing.T, b backend) {
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) { c.test(t, b) })
	}
}

func TestBolt(t *testing.T) { runContract(t, boltBackend) }

func keyMatches(t *testing.T, r Registry, id, key string) bool {
	t.Helper()
	ok, err := r.KeyMatches(id, key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// Streams and keys survive a reopen; the database holds no key in clear.
func testCreateRotateDeletePersist(t *testing.T, be backend) {
	file := be.newDB(t)
	r := be.open(t, file, true)
	a, keyA, err := r.Create("  My show ")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "My show" || len(a.ID) != 13 || !strings.HasPrefix(keyA, "sk_") || len(keyA) != 3+32 {
		t.Fatalf("created %+v key %q", a, keyA)
	}
	b, keyB, _ := r.Create("second")
	if a.ID == b.ID || keyA == keyB {
		t.Fatal("two streams share an id or a key")
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 101), "a\nb"} {
		if _, _, err := r.Create(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("Create(%q): %v, want ErrBadName", bad, err)
		}
	}
	newB, err := r.RotateKey(b.ID)
	if err != nil || newB == keyB {
		t.Fatalf("RotateKey: %q %v", newB, err)
	}
	if keyMatches(t, r, b.ID, keyB) || !keyMatches(t, r, b.ID, newB) || keyMatches(t, r, b.ID, keyA) || keyMatches(t, r, b.ID, "") {
		t.Fatal("KeyMatches after a rotation is wrong")
	}
	r.Close()

	raw := be.raw(t, file)
	if !strings.Contains(raw, a.ID) {
		t.Fatal("the raw dump misses the streams: it proves nothing")
	}
	for _, k := range []string{keyA, keyB, newB} {
		if strings.Contains(raw, k) || strings.Contains(raw, k[3:]) {
			t.Fatal("a key is stored in clear")
		}
	}
	r = be.open(t, file, true)
	defer r.Close()
	if l, err := r.List(); err != nil || len(l) != 2 || l[0].ID != a.ID || l[1].ID != b.ID || l[0].Name != "My show" ||
		!l[0].Created.Equal(a.Created) {
		t.Fatalf("after reopening: %+v %v", l, err)
	}
	if g, err := r.Get(b.ID); err != nil || g.Name != "second" || !g.Created.Equal(b.Created) {
		t.Fatalf("Get: %+v %v", g, err)
	}
	if _, err := r.Get("nosuchid"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of no stream: %v", err)
	}
	if _, err := r.RotateKey("nosuchid"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RotateKey of no stream: %v", err)
	}
	if !keyMatches(t, r, a.ID, keyA) || !keyMatches(t, r, b.ID, newB) {
		t.Fatal("keys do not survive a reopen")
	}
	if err := r.Delete(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if _, _, _, err := r.Resolve("live/"+keyA, ""); err == nil {
		t.Fatal("a deleted stream's key still publishes")
	}
}

func testResolve(t *testing.T, be backend) {
	for _, openPublish := range []bool{true, false} {
		r := be.open(t, be.newDB(t), openPublish)
		s, key, _ := r.Create("x")
		path := "live/" + s.ID
		for _, tc := range []struct {
			path, key         string
			wantPath, wantKey string
			vouched           bool
			err               error
		}{
			{"live/" + key, "", path, key, true, nil},            // OBS: the key as the stream name
			{path, key, path, key, true, nil},                    // ?key=
			{path, "", "", "", false, ErrWrongKey},               // a registered path without its key
			{path, "sk_0000", "", "", false, ErrWrongKey},        // with a wrong one
			{"live/sk_deadbeef", "", "", "", false, ErrWrongKey}, // a key of no stream
		} {
			p, k, v, err := r.Resolve(tc.path, tc.key)
			if p != tc.wantPath || k != tc.wantKey || v != tc.vouched || !errors.Is(err, tc.err) {
				t.Errorf("open=%v Resolve(%q, %q) = %q %q %v %v; want %q %q %v %v", openPublish, tc.path, tc.key, p, k, v, err,
					tc.wantPath, tc.wantKey, tc.vouched, tc.err)
			}
			// Resolving its own answer gives the same answer.
			if err == nil {
				if p2, k2, v2, err2 := r.Resolve(p, k); p2 != p || k2 != k || v2 != v || err2 != nil {
					t.Errorf("Resolve(Resolve(%q)) = %q %q %v %v", tc.path, p2, k2, v2, err2)
				}
			}
		}
		p, _, v, err := r.Resolve("live/other", "")
		if openPublish && (p != "live/other" || v || err != nil) {
			t.Errorf("open: an unregistered path: %q %v %v", p, v, err)
		}
		if !openPublish && !errors.Is(err, ErrKeyRequired) {
			t.Errorf("closed: an unregistered path: %v, want ErrKeyRequired", err)
		}
		r.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing", "s.db"), "live", true); err == nil || !strings.Contains(err.Error(), "streams.database") {
		t.Fatalf("a file in a missing folder: %v", err)
	}
	file := filepath.Join(dir, "s.db")
	r := boltBackend.open(t, file, true)
	defer r.Close()
	// A second server on the same file waits a second, then says why.
	if _, err := Open(file, "live", true); err == nil {
		t.Fatal("two registries opened one file")
	}
}

// Nobody but the owner publishes under a registered stream's path, and a
// deleted stream's path stays closed, also after a reopen.
func testResolveSubpathsAndDeleted(t *testing.T, be backend) {
	file := be.newDB(t)
	r := be.open(t, file, true)
	s, key, _ := r.Create("x")
	path := "live/" + s.ID
	if _, _, _, err := r.Resolve(path+"/evil", ""); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("a sub-path of a registered stream without its key: %v", err)
	}
	if p, _, ok, err := r.Resolve(path+"/cam2", key); p != path+"/cam2" || !ok || err != nil {
		t.Fatalf("the owner's sub-path: %q %v %v", p, ok, err)
	}
	if p, _, _, err := r.Resolve("live/"+key+"/cam2", ""); p != path+"/cam2" || err != nil {
		t.Fatalf("the owner's sub-path by key: %q %v", p, err)
	}
	if err := r.Delete(s.ID); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = be.open(t, file, true)
	defer r.Close()
	for _, p := range []string{path, path + "/240p"} {
		if _, _, _, err := r.Resolve(p, ""); !errors.Is(err, ErrDeleted) {
			t.Errorf("publish on %s of a deleted stream: %v, want ErrDeleted", p, err)
		}
	}
}

// A second server on the same database is told which file is locked and
// what to do, not a bare "timeout".
func TestOpenLockedSaysWhy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.db")
	r, err := Open(file, "live", true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = Open(file, "live", true)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "streams.database") ||
		!strings.Contains(err.Error(), "another streamhub") {
		t.Fatalf("second Open: %v", err)
	}
}
