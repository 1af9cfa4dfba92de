package rtsp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"

	"github.com/streamhub/streamhub/internal/digest"
	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/server"
)

// The challenge is Digest alone, in streamhub's realm, with a nonce of the
// connection: Basic (the key in clear) is never offered.
func TestChallengeIsDigestOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(string) server.PathConfig {
		pc := server.DefaultPathConfig()
		pc.ReadKey = "readsecret"
		return pc
	})
	s := rawResponse(t, e.addr, "DESCRIBE rtsp://"+e.addr+"/live/x RTSP/1.0\r\nCSeq: 1\r\n\r\n")
	if !strings.Contains(s, "401") || !strings.Contains(s, `WWW-Authenticate: Digest realm="streamhub"`) || !strings.Contains(s, `nonce="`) {
		t.Fatalf("challenge: %q", s)
	}
	if strings.Contains(s, "Basic") {
		t.Errorf("the challenge offers Basic: %q", s)
	}
}

// A registered stream's publisher authenticates by Digest with the stream
// id as user name and its key as password, checked against the stored HA1
// alone (the server never sees the key); the registry's own check is not
// asked (Vouched). A wrong key, another user name or a stale nonce is
// refused and spends one of the address's failures.
func TestDigestAgainstStoredHA1(t *testing.T) {
	t.Parallel()
	const id, key = "abcdefghijklm", "sk_0123456789abcdef0123456789abcdef"
	ha1 := digest.HA1(id, key)
	budget := guard.NewBudget(3, time.Minute)
	e := newEnvWith(t, server.HubConfig{
		// As the registry: a registered path without its key is refused.
		ResolvePublish: func(path, k string) (string, string, bool, error) {
			if strings.HasPrefix(path, "live/"+id) {
				return "", "", false, errors.New("wrong or missing stream key")
			}
			return path, k, false, nil
		},
		PathConfig: func(p string) server.PathConfig {
			pc := server.DefaultPathConfig()
			if strings.HasPrefix(p, "secure/") {
				pc.ReadKey = "readsecret"
			}
			return pc
		},
		AuthFailures: budget,
	}, func(c *Config) {
		c.DigestHA1 = func(path string) (string, []byte, bool) {
			if path == "live/"+id {
				return id, ha1, true
			}
			return "", nil, false
		}
	})
	host := e.addr
	if _, err := startPublish(t, "rtsp://"+host+"/live/"+id, publishOpts{}); !strings.Contains(statusOf(err), "401") {
		t.Errorf("publish without credentials: %s, want 401", statusOf(err))
	}
	if _, err := startPublish(t, "rtsp://"+id+":sk_wrong@"+host+"/live/"+id, publishOpts{}); err == nil {
		t.Error("publish with a wrong key was accepted")
	}
	if _, err := startPublish(t, "rtsp://someone:"+key+"@"+host+"/live/"+id, publishOpts{}); err == nil {
		t.Error("publish with the key but another user name was accepted")
	}
	if !strings.Contains(e.logs.String(), "wrong RTSP password") {
		t.Errorf("no refusal logged:\n%s", e.logs.String())
	}
	if _, err := startPublish(t, "rtsp://"+id+":"+key+"@"+host+"/live/"+id, publishOpts{}); err != nil {
		t.Fatalf("publish with id:key by Digest: %v", err)
	}
	waitPublished(t, e, "live/"+id)
	// A captured answer is worth nothing on another connection (another
	// nonce), and costs a failure: the budget (3) is spent by now.
	uri := "rtsp://" + host + "/secure/x"
	req := "DESCRIBE " + uri + " RTSP/1.0\r\nCSeq: 1\r\n" +
		`Authorization: Digest username="bob", realm="streamhub", nonce="0123", uri="` + uri +
		`", response="` + digest.Hex(hexOf(digest.HA1("bob", "readsecret"))+":0123:"+digest.Hex("DESCRIBE:"+uri)) + `"` + "\r\n\r\n"
	if s := rawRequest(t, host, req); !strings.Contains(s, "401") {
		t.Errorf("a replayed answer with a nonce of another connection: %q, want 401", s)
	}
	if budget.Allow(host[:strings.LastIndexByte(host, ':')]) {
		t.Error("three wrong passwords did not spend the address's budget")
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// checkAuth against every shape of Authorization header: the right Digest
// answer (absolute or path uri, upper-case hex) and Basic pass; a wrong
// realm, nonce, uri, algorithm, user or response fails.
func TestCheckAuth(t *testing.T) {
	u, _ := base.ParseURL("rtsp://h:8554/live/x")
	const nonce = "n0nce"
	cfg := credential{key: "k"}
	reg := credential{user: "id1", ha1: digest.HA1("id1", "sk_k")}
	answer := func(user, realm, n, uri, method string, ha1 []byte) string {
		return `Digest username="` + user + `", realm="` + realm + `", nonce="` + n + `", uri="` + uri +
			`", response="` + digest.Hex(hexOf(ha1)+":"+n+":"+digest.Hex(method+":"+uri)) + `"`
	}
	basic := func(user, pass string) string {
		return headers.Authorization{Method: headers.AuthMethodBasic, Username: user, BasicPass: pass}.Marshal()[0]
	}
	cases := []struct {
		name string
		auth string
		cs   []credential
		want int
	}{
		{"config key, any user", answer("bob", "streamhub", nonce, u.String(), "DESCRIBE", digest.HA1("bob", "k")), []credential{cfg}, 0},
		{"path uri", answer("bob", "streamhub", nonce, "/live/x", "DESCRIBE", digest.HA1("bob", "k")), []credential{cfg}, 0},
		{"registered HA1", answer("id1", "streamhub", nonce, u.String(), "DESCRIBE", reg.ha1), []credential{cfg, reg}, 1},
		{"registered, other user", answer("id2", "streamhub", nonce, u.String(), "DESCRIBE", digest.HA1("id2", "sk_k")), []credential{reg}, -1},
		{"wrong realm", answer("bob", "ipcam", nonce, u.String(), "DESCRIBE", digest.HA1("bob", "k")), []credential{cfg}, -1},
		{"wrong nonce", answer("bob", "streamhub", "other", u.String(), "DESCRIBE", digest.HA1("bob", "k")), []credential{cfg}, -1},
		{"wrong uri", answer("bob", "streamhub", nonce, "rtsp://h:8554/live/y", "DESCRIBE", digest.HA1("bob", "k")), []credential{cfg}, -1},
		{"wrong method", answer("bob", "streamhub", nonce, u.String(), "ANNOUNCE", digest.HA1("bob", "k")), []credential{cfg}, -1},
		{"wrong key", answer("bob", "streamhub", nonce, u.String(), "DESCRIBE", digest.HA1("bob", "x")), []credential{cfg}, -1},
		{"sha-256", strings.Replace(answer("bob", "streamhub", nonce, u.String(), "DESCRIBE", digest.HA1("bob", "k")), "Digest ", `Digest algorithm="SHA-256", `, 1), []credential{cfg}, -1},
		{"basic config", basic("any", "k"), []credential{cfg}, 0},
		{"basic registered", basic("id1", "sk_k"), []credential{reg}, 0},
		{"basic wrong", basic("id1", "sk_x"), []credential{cfg, reg}, -1},
		{"garbage", "Digest ,,,===\"", []credential{cfg}, -1},
	}
	for _, c := range cases {
		req := &base.Request{Method: base.Describe, URL: u, Header: base.Header{"Authorization": base.HeaderValue{c.auth}}}
		if _, got := checkAuth(req, nonce, c.cs); got != c.want {
			t.Errorf("%s: matched %d, want %d (%s)", c.name, got, c.want, c.auth)
		}
	}
	// An upper-case hex response is accepted.
	a := answer("bob", "streamhub", nonce, "/live/x", "DESCRIBE", digest.HA1("bob", "k"))
	i := strings.Index(a, `response="`) + len(`response="`)
	a = a[:i] + strings.ToUpper(a[i:])
	req := &base.Request{Method: base.Describe, URL: u, Header: base.Header{"Authorization": base.HeaderValue{a}}}
	if _, got := checkAuth(req, nonce, []credential{cfg}); got != 0 {
		t.Errorf("upper-case hex response refused")
	}
	// An empty nonce (a connection without one) never matches.
	if _, got := checkAuth(req, "", []credential{cfg}); got != -1 {
		t.Error("matched with an empty nonce")
	}
}

// FuzzCheckAuth feeds any Authorization header, method and URL to the
// credential check: it must not panic, and must not accept an answer made
// without the key.
func FuzzCheckAuth(f *testing.F) {
	f.Add(`Digest username="id1", realm="streamhub", nonce="n", uri="rtsp://h/live/x", response="00"`, "DESCRIBE", "rtsp://h/live/x")
	f.Add(`Basic aWQxOnNrX2s=`, "ANNOUNCE", "rtsp://h/live/x")
	f.Add(`Digest username="a", realm="streamhub", nonce="n", uri="rtsp://h/x/trackID=0", response="0", algorithm="MD5"`, "SETUP", "rtsp://h/x/trackID=0")
	f.Add(`Digest `, "SETUP", "rtsp://h/")
	f.Fuzz(func(t *testing.T, auth, method, rawURL string) {
		u, err := base.ParseURL(rawURL)
		if err != nil {
			u = nil
		}
		req := &base.Request{Method: base.Method(method), URL: u, Header: base.Header{"Authorization": base.HeaderValue{auth}}}
		cs := []credential{{key: "k"}, {user: "id1", ha1: digest.HA1("id1", "sk_k")}}
		if _, i := checkAuth(req, "n", cs); i >= 0 {
			// Only a real answer passes: Basic with the key, or a Digest
			// response that took the key (its HA1) to make.
			var a headers.Authorization
			if a.Unmarshal(req.Header["Authorization"]) != nil {
				t.Fatalf("matched an unparsable header %q", auth)
			}
			if a.Method == headers.AuthMethodBasic && a.BasicPass != "k" && a.BasicPass != "sk_k" {
				t.Fatalf("basic without the key matched: %q", auth)
			}
		}
	})
}

// rawResponse is rawRequest returning the whole response head.
func rawResponse(t *testing.T, addr, req string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	br := bufio.NewReader(nc)
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\r\n" {
			return b.String()
		}
	}
}
