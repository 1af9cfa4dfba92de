package web

// The chat: one room per stream path, over WebSocket at /chat/<path>.
//
//	browser ─frame─▶ readLoop (the HTTP handler's goroutine) ─parse, limits─▶ room.say
//	                                                                            │ encode once
//	browser ◀─frame─ writeLoop (one goroutine per connection) ◀─ client.send ◀──┘ every member
//
// serveChat owns both goroutines of a connection and returns only when
// both ended; chat.close ends every connection and waits for every
// serveChat. A member whose send queue is full (it does not read) is
// disconnected rather than slowing the room down.

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/server"
)

const (
	// writeTimeout bounds every write to a chat connection.
	writeTimeout = 10 * time.Second
	// pingInterval is how often the server pings; pongWait is how long it
	// waits for any frame (a pong included) before it gives up.
	pingInterval = 30 * time.Second
	pongWait     = 75 * time.Second
	// sendQueue is how many frames may wait for a slow connection.
	sendQueue = 64
	// closeGrace is how long Close waits for the close frames, in all.
	closeGrace = time.Second
)

// Causes a chat connection ends with (besides read and write errors).
var (
	errShutdown = errors.New("chat: server shutting down")
	errSlow     = fmt.Errorf("chat: too slow: %d frames waiting to be sent", sendQueue)
	errFull     = errors.New("chat: the server has as many chat connections as it allows (Config.ChatMaxConns); try again later")
)

// chat holds the rooms and the connections.
type chat struct {
	conf     Config
	log      *slog.Logger
	upgrader websocket.Upgrader

	// mu guards rooms, conns and closed. Lock order: chat.mu, then room.mu.
	mu     sync.Mutex
	rooms  map[string]*room
	conns  map[*client]struct{}
	closed bool
	wg     sync.WaitGroup // one per serveChat past the upgrade
}

func newChat(conf Config, log *slog.Logger) *chat {
	c := &chat{conf: conf, log: log, rooms: map[string]*room{}, conns: map[*client]struct{}{}}
	c.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		CheckOrigin:      sameOrigin,
	}
	return c
}

// sameOrigin accepts a WebSocket handshake without an Origin header (not a
// browser) or from a page of the host it connects to: another site's page
// may not chat in a visitor's name.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && strings.EqualFold(u.Host, r.Host)
}

// room is the chat of one path. It lives while it has members.
type room struct {
	path string
	// mu guards members and history.
	mu      sync.Mutex
	members map[*client]struct{}
	history [][]byte // "msg" frames, oldest first, at most Config.ChatHistory
}

// client is one chat connection.
// maxChatPerHost bounds the chat connections from one address.
const maxChatPerHost = 20

type client struct {
	conn   *websocket.Conn
	path   string
	remote string
	host   string        // the remote's IP, for maxChatPerHost
	send   chan []byte   // frames for writeLoop; never closed
	done   chan struct{} // closed when readLoop ended: writeLoop returns

	closeOnce sync.Once
	cause     error // why the connection ended; set once by end

	// Only readLoop uses these.
	name    string
	limiter rateLimiter
	said    int
}

// end closes the connection (once) and records why; the first cause wins.
func (c *client) end(cause error) {
	c.closeOnce.Do(func() {
		c.cause = cause
		c.conn.Close() //nolint:errcheck // the cause is what counts
	})
}

// reply queues a frame for this client only; when the queue is full it is
// dropped (it answers the client's own frames, which it is not reading).
func (c *client) reply(b []byte) {
	select {
	case c.send <- b:
	default:
	}
}

// serveChat upgrades to WebSocket and serves one chat connection until it
// ends.
func (h *Handler) serveChat(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	if err := server.ValidatePath(p); err != nil {
		http.Error(w, "chat: "+err.Error(), http.StatusNotFound)
		return
	}
	// The chat of a stream is for those who may watch it, while it is live.
	if err := h.hub.Authorize(r.Context(), p, server.ReadRequest{Key: r.URL.Query().Get("key"),
		Peer: server.Peer{Protocol: "chat", Remote: r.RemoteAddr, Query: r.URL.RawQuery}}); err != nil {
		http.Error(w, "chat: "+err.Error(), http.StatusForbidden)
		return
	}
	if h.hub.Stream(p) == nil {
		http.Error(w, "chat: "+p+" is not live", http.StatusNotFound)
		return
	}
	ch := h.chat
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	ch.mu.Lock()
	closed, full := ch.closed, len(ch.conns) >= ch.conf.ChatMaxConns
	perHost := 0
	for c := range ch.conns {
		if c.host == host {
			perHost++
		}
	}
	ch.mu.Unlock()
	if perHost >= maxChatPerHost {
		http.Error(w, fmt.Sprintf("chat: at most %d chat connections per address", maxChatPerHost), http.StatusTooManyRequests)
		return
	}
	switch {
	case closed:
		http.Error(w, errShutdown.Error(), http.StatusServiceUnavailable)
		return
	case full:
		http.Error(w, fmt.Sprintf("%v (%d)", errFull, ch.conf.ChatMaxConns), http.StatusServiceUnavailable)
		return
	}
	conn, err := ch.upgrader.Upgrade(w, r, nil) // answers the error itself (403 for another origin)
	if err != nil {
		h.log.Debug("chat refused", "path", p, "remote", r.RemoteAddr, "err", err)
		return
	}
	c := &client{
		conn: conn, path: p, remote: r.RemoteAddr, host: host,
		send: make(chan []byte, sendQueue), done: make(chan struct{}),
		limiter: rateLimiter{n: ch.conf.ChatRate, window: ch.conf.ChatRateWindow},
	}
	if code, err := ch.add(c); err != nil {
		conn.WriteControl(websocket.CloseMessage, //nolint:errcheck // closing anyway
			websocket.FormatCloseMessage(code, err.Error()), time.Now().Add(closeGrace))
		conn.Close() //nolint:errcheck // nothing was said on it
		return
	}
	defer ch.wg.Done()
	start := time.Now()
	h.log.Info("chat opened", "path", p, "remote", c.remote)

	rm := ch.join(c)
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		err := func() (err error) {
			defer guard.RecoverErr(h.log, "chat writer", &err, "path", p, "remote", c.remote)
			return c.writeLoop()
		}()
		if err != nil {
			c.end(fmt.Errorf("write: %w", err))
		}
	}()
	// A panic ends this connection only, and still through the cleanup
	// below (Close waits for every connection).
	err = func() (err error) {
		defer guard.RecoverErr(h.log, "chat reader", &err, "path", p, "remote", c.remote)
		return ch.readLoop(c, rm)
	}()
	ch.leave(c, rm)
	close(c.done)
	c.end(err)
	writer.Wait()
	ch.remove(c)
	h.log.Info("chat closed", "path", p, "remote", c.remote, "messages", c.said,
		"duration", time.Since(start).Round(time.Millisecond), "cause", c.cause.Error())
}

// add registers c and counts it in wg, unless the chat is closed or full
// (then it returns the WebSocket close code and why). serveChat checked
// both before the upgrade; this is the check that holds.
func (ch *chat) add(c *client) (int, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	switch {
	case ch.closed:
		return websocket.CloseGoingAway, errShutdown
	case len(ch.conns) >= ch.conf.ChatMaxConns:
		return websocket.CloseTryAgainLater, errFull
	}
	ch.conns[c] = struct{}{}
	ch.wg.Add(1)
	return 0, nil
}

func (ch *chat) remove(c *client) {
	ch.mu.Lock()
	delete(ch.conns, c)
	ch.mu.Unlock()
}

// join puts c into its path's room, made if needed, and queues the room's
// history as c's first frame: under the room's lock, so no message is
// missed or sent twice.
func (ch *chat) join(c *client) *room {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	rm := ch.rooms[c.path]
	if rm == nil {
		rm = &room{path: c.path, members: map[*client]struct{}{}}
		ch.rooms[c.path] = rm
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.members[c] = struct{}{}
	c.send <- encodeHistory(rm.history) // the queue is new and empty
	return rm
}

// leave takes c out of rm and removes rm when it is empty.
func (ch *chat) leave(c *client, rm *room) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	rm.mu.Lock()
	defer rm.mu.Unlock()
	delete(rm.members, c)
	if len(rm.members) == 0 && ch.rooms[rm.path] == rm {
		delete(ch.rooms, rm.path)
	}
}

// say adds a message to rm's history and queues it for every member; a
// member whose queue is full is disconnected.
func (rm *room) say(name, text string, now time.Time, historyLen int) {
	b := encodeLine(name, text, now)
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if len(rm.history) >= historyLen {
		n := copy(rm.history, rm.history[len(rm.history)-historyLen+1:])
		rm.history = rm.history[:n]
	}
	rm.history = append(rm.history, b)
	for m := range rm.members {
		select {
		case m.send <- b:
		default:
			m.end(errSlow)
		}
	}
}

// readLoop reads c's frames until the connection fails; it returns why.
// A refused frame is answered with an error frame, and the connection
// stays open.
func (ch *chat) readLoop(c *client, rm *room) error {
	c.conn.SetReadLimit(readLimit(ch.conf.ChatMaxBytes))
	c.conn.SetReadDeadline(time.Now().Add(pongWait)) //nolint:errcheck // a failed deadline fails the next read
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		typ, b, err := c.conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		c.conn.SetReadDeadline(time.Now().Add(pongWait)) //nolint:errcheck // as above
		if typ != websocket.TextMessage {
			c.reply(encodeError(errBadJSON))
			continue
		}
		m, err := parseClientMessage(b, ch.conf.ChatMaxBytes)
		if err != nil {
			c.reply(encodeError(err))
			continue
		}
		switch m.Type {
		case "name":
			c.name = m.Name
			c.reply(encodeName(m.Name))
		case "say":
			now := time.Now()
			if c.name == "" {
				c.reply(encodeError(errNoName))
				continue
			}
			if wait := c.limiter.allow(now); wait > 0 {
				c.reply(encodeError(&rateError{n: ch.conf.ChatRate, window: ch.conf.ChatRateWindow, wait: wait}))
				continue
			}
			c.said++
			rm.say(c.name, m.Text, now, ch.conf.ChatHistory)
		}
	}
}

// errNoName is the answer to a "say" before a "name".
var errNoName = errors.New(`chat: choose a name first ({"type":"name","name":...})`)

// rateError is the answer to a message over the rate limit.
type rateError struct {
	n            int
	window, wait time.Duration
}

func (e *rateError) Error() string {
	return fmt.Sprintf("chat: slow down: at most %d messages per %s; try again in %.1f s", e.n, e.window, e.wait.Seconds())
}

// readLimit is the largest frame a client may send: a message of maxText
// bytes, each escaped in JSON (\u00XX is 6 bytes), and room for the rest.
// A frame beyond it closes the connection (1009); a smaller one with a
// text beyond maxText gets an error frame.
func readLimit(maxText int) int64 {
	return int64(6*maxText + 1024)
}

// writeLoop writes the queued frames and the pings until readLoop ended
// (nil) or a write fails (its error). Every write has a deadline.
func (c *client) writeLoop() error {
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case b := <-c.send:
			if err := c.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
				return err
			}
			if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
				return err
			}
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				return err
			}
		case <-c.done:
			return nil
		}
	}
}

// close refuses new connections, sends every connection a close frame
// (all within closeGrace), ends them and waits until every serveChat
// returned.
func (ch *chat) close() {
	ch.mu.Lock()
	ch.closed = true
	conns := make([]*client, 0, len(ch.conns))
	for c := range ch.conns {
		conns = append(conns, c)
	}
	ch.mu.Unlock()
	deadline := time.Now().Add(closeGrace)
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
	for _, c := range conns {
		c.conn.WriteControl(websocket.CloseMessage, msg, deadline) //nolint:errcheck // ending it anyway
		c.end(errShutdown)
	}
	ch.wg.Wait()
}

// rateLimiter allows n events in any window (a sliding log of the last n
// event times). Only its connection's readLoop uses it.
type rateLimiter struct {
	n      int
	window time.Duration
	times  []time.Time // the allowed events of the last window, oldest first
}

// allow records an event at now and returns 0, or returns how long to wait
// until one more is allowed.
func (l *rateLimiter) allow(now time.Time) time.Duration {
	i := 0
	for i < len(l.times) && now.Sub(l.times[i]) >= l.window {
		i++
	}
	l.times = append(l.times[:0], l.times[i:]...)
	if len(l.times) >= l.n {
		return l.window - now.Sub(l.times[0])
	}
	l.times = append(l.times, now)
	return 0
}
