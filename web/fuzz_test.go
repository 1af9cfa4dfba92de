package web

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseClientMessage checks that parseClientMessage never panics and
// that what it accepts keeps the promises the room relies on.
func FuzzParseClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"name","name":"alice"}`,
		`{"type":"say","text":"hello"}`,
		`{"type":"say","text":"<script>window.__pwned=1</script>"}`,
		`{"type":"say","text":" \u0000 "}`,
		`{"type":"name","name":"\u202e\ud800"}`,
		`{"type":"say","text":"a"}{}`,
		`nope`,
	} {
		f.Add([]byte(s))
	}
	const max = 50
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseClientMessage(b, max)
		if err != nil {
			if m != (clientMessage{}) {
				t.Fatalf("error %v with a message %+v", err, m)
			}
			return
		}
		switch m.Type {
		case "name":
			n := utf8.RuneCountInString(m.Name)
			if n < 1 || n > maxNameRunes || m.Name != strings.TrimSpace(m.Name) || !utf8.ValidString(m.Name) ||
				strings.IndexFunc(m.Name, badNameRune) >= 0 || m.Text != "" {
				t.Fatalf("accepted a bad name: %+q", m)
			}
		case "say":
			if m.Text == "" || len(m.Text) > max || m.Text != strings.TrimSpace(m.Text) || !utf8.ValidString(m.Text) ||
				strings.IndexFunc(m.Text, badTextRune) >= 0 || m.Name != "" {
				t.Fatalf("accepted a bad text: %+q", m)
			}
		default:
			t.Fatalf("accepted type %q", m.Type)
		}
	})
}
