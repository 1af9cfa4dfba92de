package registry

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamhub/streamhub/internal/digest"
)

func open(t *testing.T, file string, openPublish bool) *Registry {
	t.Helper()
	r, err := Open(file, "live", openPublish)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Streams and keys survive a reopen; the file holds no key in clear.
func TestCreateRotateDeletePersist(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.db")
	r := open(t, file, true)
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
	if r.KeyMatches(b.ID, keyB) || !r.KeyMatches(b.ID, newB) || r.KeyMatches(b.ID, keyA) || r.KeyMatches(b.ID, "") {
		t.Fatal("KeyMatches after a rotation is wrong")
	}
	r.Close()

	raw, _ := os.ReadFile(file)
	for _, k := range []string{keyA, keyB, newB} {
		if strings.Contains(string(raw), k) || strings.Contains(string(raw), k[3:]) {
			t.Fatal("a key is stored in clear")
		}
	}
	r = open(t, file, true)
	defer r.Close()
	if l := r.List(); len(l) != 2 || l[0].ID != a.ID || l[1].ID != b.ID {
		t.Fatalf("after reopening: %+v", l)
	}
	if !r.KeyMatches(a.ID, keyA) || !r.KeyMatches(b.ID, newB) {
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

func TestResolve(t *testing.T) {
	for _, openPublish := range []bool{true, false} {
		r := open(t, filepath.Join(t.TempDir(), "s.db"), openPublish)
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
	r := open(t, file, true)
	defer r.Close()
	// A second server on the same file waits a second, then says why.
	if _, err := Open(file, "live", true); err == nil {
		t.Fatal("two registries opened one file")
	}
}

// Nobody but the owner publishes under a registered stream's path, and a
// deleted stream's path stays closed, also after a reopen.
func TestResolveSubpathsAndDeleted(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.db")
	r := open(t, file, true)
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
	r = open(t, file, true)
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

// A stream's RTSP Digest HA1 is MD5(id:realm:key), made with the key and
// remade when it rotates, and survives a reopen; an unknown id has none.
func TestDigestHA1(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.db")
	r := open(t, file, false)
	s, key, err := r.Create("show")
	if err != nil {
		t.Fatal(err)
	}
	ha1, ok := r.DigestHA1(s.ID)
	if !ok || !bytes.Equal(ha1, digest.HA1(s.ID, key)) {
		t.Fatalf("DigestHA1 = %x, %v; want MD5(id:realm:key) %x", ha1, ok, digest.HA1(s.ID, key))
	}
	if bytes.Equal(ha1, digest.HA1("other", key)) || bytes.Equal(ha1, digest.HA1(s.ID, key+"x")) {
		t.Fatal("HA1 does not depend on the user name and the key")
	}
	key2, err := r.RotateKey(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	ha1b, _ := r.DigestHA1(s.ID)
	if !bytes.Equal(ha1b, digest.HA1(s.ID, key2)) {
		t.Fatal("HA1 not remade with the rotated key")
	}
	r.Close()
	r = open(t, file, false)
	defer r.Close()
	if got, ok := r.DigestHA1(s.ID); !ok || !bytes.Equal(got, ha1b) {
		t.Fatalf("after a reopen: %x %v", got, ok)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(key2)) {
		t.Fatal("the key is in the file in clear")
	}
	if _, ok := r.DigestHA1("nosuchid"); ok {
		t.Fatal("an unknown id has an HA1")
	}
}
