package hls

import (
	"fmt"
	"strconv"
	"strings"
)

// segURI, partURI and initURI name the files a playlist lists (parseFileName
// reads them back).
func segURI(prefix string, msn uint64) string { return fmt.Sprintf("%sseg%d.mp4", prefix, msn) }
func partURI(prefix string, msn uint64, i int) string {
	return fmt.Sprintf("%spart%d.%d.mp4", prefix, msn, i)
}
func initURI(prefix string, id int) string { return fmt.Sprintf("%sinit%d.mp4", prefix, id) }

// fileRef names one fMP4 file: init<n>, seg<n> or part<n>.<idx>.
type fileRef struct {
	kind string
	n    uint64
	idx  int
}

// parseFileName parses a file name (without the muxer prefix and ".mp4")
// as the playlists write it (initURI, segURI, partURI).
func parseFileName(name string) (fileRef, bool) {
	num := func(s string) (uint64, bool) {
		if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
			return 0, false
		}
		v, err := strconv.ParseUint(s, 10, 64)
		return v, err == nil
	}
	switch {
	case strings.HasPrefix(name, "init"):
		n, ok := num(name[4:])
		return fileRef{kind: "init", n: n}, ok && n < 1<<31
	case strings.HasPrefix(name, "seg"):
		n, ok := num(name[3:])
		return fileRef{kind: "seg", n: n}, ok
	case strings.HasPrefix(name, "part"):
		a, b, found := strings.Cut(name[4:], ".")
		n, ok1 := num(a)
		i, ok2 := num(b)
		return fileRef{kind: "part", n: n, idx: int(i)}, found && ok1 && ok2 && i < 1000
	}
	return fileRef{}, false
}
