package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The chat's frames are JSON text frames.
//
// Client → server:
//
//	{"type":"name","name":"alice"}   choose (or change) the name; answered by a "name" frame
//	{"type":"say","text":"hello"}    send a message to the room
//
// Server → client:
//
//	{"type":"history","messages":[MSG,...]}   on joining: the room's last messages, oldest first
//	{"type":"msg","name":"alice","text":"hello","time":1733212345678}   MSG: a message (time in Unix ms)
//	{"type":"name","name":"alice"}            the name as accepted (trimmed)
//	{"type":"error","error":"..."}            a refused frame; the connection stays open

// maxNameRunes caps a chat name, in characters.
const maxNameRunes = 32

// Errors of parseClientMessage. Their text is sent to the client.
var (
	errBadJSON     = errors.New(`chat: a frame is one JSON object: {"type":"name","name":...} or {"type":"say","text":...}`)
	errUnknownType = errors.New(`chat: unknown message type: use "name" or "say"`)
	errBadName     = fmt.Errorf("chat: a name has 1 to %d characters, none of them control characters", maxNameRunes)
	errEmptyText   = errors.New("chat: the message is empty")
	errControl     = errors.New("chat: the message has control characters (only line breaks and tabs are allowed)")
)

// tooLongError is returned for a message longer than the room allows.
type tooLongError struct{ n, max int }

func (e *tooLongError) Error() string {
	return fmt.Sprintf("chat: the message has %d bytes, at most %d are allowed", e.n, e.max)
}

// clientMessage is a parsed client frame: Type is "name" (Name set) or
// "say" (Text set).
type clientMessage struct {
	Type string `json:"type"`
	Name string `json:"name,omitempty"`
	Text string `json:"text,omitempty"`
}

// parseClientMessage parses and checks one client frame. A name comes back
// trimmed, 1 to maxNameRunes characters without control or bidirectional
// formatting characters; a text trimmed, not empty, at most maxText bytes,
// without control characters but line breaks and tabs. JSON decoding makes
// both valid UTF-8.
func parseClientMessage(b []byte, maxText int) (clientMessage, error) {
	var m clientMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return clientMessage{}, errBadJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return clientMessage{}, errBadJSON // something after the object
	}
	switch m.Type {
	case "name":
		name := strings.TrimSpace(m.Name)
		if n := utf8.RuneCountInString(name); n < 1 || n > maxNameRunes || strings.IndexFunc(name, badNameRune) >= 0 {
			return clientMessage{}, errBadName
		}
		return clientMessage{Type: "name", Name: name}, nil
	case "say":
		text := strings.TrimSpace(m.Text)
		switch {
		case text == "":
			return clientMessage{}, errEmptyText
		case len(text) > maxText:
			return clientMessage{}, &tooLongError{n: len(text), max: maxText}
		case strings.IndexFunc(text, badTextRune) >= 0:
			return clientMessage{}, errControl
		}
		return clientMessage{Type: "say", Text: text}, nil
	}
	return clientMessage{}, errUnknownType
}

// badNameRune reports the runes a name may not have: control characters
// and the bidirectional formatting characters, which could make a name
// look like another.
func badNameRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError
}

// badTextRune reports the runes a message may not have.
func badTextRune(r rune) bool {
	return r != '\n' && r != '\t' && unicode.IsControl(r)
}

// chatLine is a message as the server sends it (type "msg") and keeps it
// in a room's history.
type chatLine struct {
	Type string `json:"type"`
	Name string `json:"name"`
	Text string `json:"text"`
	Time int64  `json:"time"` // Unix ms
}

// encodeLine returns the "msg" frame of a message.
func encodeLine(name, text string, t time.Time) []byte {
	b, _ := json.Marshal(chatLine{Type: "msg", Name: name, Text: text, Time: t.UnixMilli()}) // strings and an int: cannot fail
	return b
}

// encodeHistory returns the "history" frame of lines, each a "msg" frame.
func encodeHistory(lines [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"type":"history","messages":[`)
	for i, l := range lines {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(l)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// encodeName returns the "name" frame that confirms a name.
func encodeName(name string) []byte {
	b, _ := json.Marshal(map[string]string{"type": "name", "name": name})
	return b
}

// encodeError returns the "error" frame of err.
func encodeError(err error) []byte {
	b, _ := json.Marshal(map[string]string{"type": "error", "error": err.Error()})
	return b
}
