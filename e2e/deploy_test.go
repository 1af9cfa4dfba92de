//go:build e2e

package e2e

// Deployment (issue 19 item 7): the systemd unit passes systemd-analyze,
// the Dockerfile's build makes a static binary that runs as its non-root
// user and gets ready, its EXPOSE lists the default ports, and the health
// endpoints and `streamhub version` answer.

import (
	"bufio"
	"debug/elf"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func init() {
	installHints["systemd-analyze"] = "install it with scripts/test.sh (or: sudo apt-get install -y systemd)"
}

// TestSystemdUnit verifies deploy/systemd/streamhub.service with
// systemd-analyze verify (any warning fails) and its hardening with
// systemd-analyze security --offline. The unit's ExecStart names
// /usr/local/bin/streamhub, which verify requires to exist: the checked
// copy names the test's binary instead.
func TestSystemdUnit(t *testing.T) {
	requireTool(t, "systemd-analyze")
	unit := mustRead(t, "../deploy/systemd/streamhub.service")
	for _, want := range []string{"\nDynamicUser=yes\n", "\nProtectSystem=strict\n", "\nStateDirectory=streamhub\n",
		"\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n", "\nNoNewPrivileges=yes\n", "\nExecReload=/bin/kill -HUP $MAINPID\n",
		"\nExecStart=/usr/local/bin/streamhub --config /etc/streamhub/streamhub.yml\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	file := filepath.Join(t.TempDir(), "streamhub.service")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(unit, "/usr/local/bin/streamhub", binPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", file).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", file).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for streamhub.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security --offline=yes: %v\n%s", err, tail(string(out), 20))
	}
	// 0 is the most locked down, 10 nothing: "OK" is below 3.
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score >= 3 {
		t.Errorf("systemd-analyze security: exposure %.1f, want below 3 (OK):\n%s", score, tail(string(out), 40))
	}
	t.Logf("systemd-analyze security: exposure %s", m[1])
}

// dockerfile is what TestDockerfile reads of the Dockerfile.
type dockerfile struct {
	build  string   // the RUN line of the build stage that runs go build
	user   string   // the last USER
	expose []string // "1935/tcp", ...
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	var d dockerfile
	sc := bufio.NewScanner(strings.NewReader(mustRead(t, "../Dockerfile")))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build"):
			d.build = strings.TrimPrefix(l, "RUN ")
		case strings.HasPrefix(l, "USER "):
			d.user = strings.TrimPrefix(l, "USER ")
		case strings.HasPrefix(l, "EXPOSE "):
			d.expose = append(d.expose, strings.Fields(strings.TrimPrefix(l, "EXPOSE "))...)
		}
	}
	return d
}

// defaultPorts returns the ports of the default config's listeners, as
// "PORT/tcp" or "PORT/udp".
func defaultPorts(t *testing.T, bin string) []string {
	t.Helper()
	out, errOut, code := run(t, 10*time.Second, bin, "config", "default")
	if code != 0 {
		t.Fatalf("config default: %d %s", code, errOut)
	}
	var raw map[string]map[string]any
	if err := yaml.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	str := func(sec, key string) string { s, _ := raw[sec][key].(string); return s }
	port := func(addr, proto string) string {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("default address %q: %v", addr, err)
		}
		return p + "/" + proto
	}
	ports := []string{port(str("rtmp", "address"), "tcp"), port(str("rtsp", "address"), "tcp"),
		port(str("rtsp", "udpRTPAddress"), "udp"), port(str("rtsp", "udpRTCPAddress"), "udp"),
		port(str("srt", "address"), "udp"), port(str("http", "address"), "tcp")}
	if en, _ := raw["webrtc"]["enabled"].(bool); en {
		ports = append(ports, port(str("webrtc", "udpAddress"), "udp"), port(str("webrtc", "tcpAddress"), "tcp"))
	}
	slices.Sort(ports)
	return ports
}

// TestDockerfile runs the Dockerfile's build line outside Docker (no
// daemon here; a machine with one also builds the image) and checks that
// the binary is static, that it runs as the image's unprivileged user and
// gets ready, and that EXPOSE and deploy/docker/docker-comp.yml publish
// exactly the default config's ports.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if !strings.HasPrefix(d.build, "CGO_ENABLED=0 go build ") || !strings.Contains(d.build, "-o /out/streamhub") {
		t.Fatalf("the Dockerfile's build line %q is not the static build this test knows", d.build)
	}
	if d.user == "" || d.user == "root" || strings.HasPrefix(d.user, "0") {
		t.Errorf("the image runs as %q, want an unprivileged user", d.user)
	}
	uid, _, _ := strings.Cut(d.user, ":")
	if _, err := strconv.Atoi(uid); err != nil {
		t.Fatalf("USER %q: want a numeric uid (Kubernetes runAsNonRoot checks it)", d.user)
	}

	bin := filepath.Join(t.TempDir(), "streamhub")
	cmd := exec.Command("sh", "-c", strings.Replace(d.build, "-o /out/streamhub", "-o "+bin, 1))
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build %q: %v\n%s", d.build, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	libs, _ := f.ImportedLibraries()
	interp := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if interp || len(libs) > 0 {
		t.Errorf("the binary is not static: interpreter %v, libraries %v", interp, libs)
	}
	ver, _, _ := run(t, 10*time.Second, bin, "version")
	for _, want := range []string{"\nbuild\tCGO_ENABLED=0\n", "\nbuild\t-trimpath=true\n", "\ndep\tgithub.com/fsnotify/fsnotify\tv1.10.1\t"} {
		if !strings.Contains(ver, want) {
			t.Errorf("streamhub version lacks %q:\n%s", strings.TrimSpace(want), ver)
		}
	}

	ports := defaultPorts(t, bin)
	expose := slices.Clone(d.expose)
	slices.Sort(expose)
	if !slices.Equal(expose, ports) {
		t.Errorf("EXPOSE %v, the default config listens on %v", expose, ports)
	}
	compose := mustRead(t, "../deploy/docker/docker-compose.yml")
	var published []string
	for _, m := range regexp.MustCompile(`"\d+:(\d+/(?:tcp|udp))"`).FindAllStringSubmatch(compose, -1) {
		published = append(published, m[1])
	}
	slices.Sort(published)
	if !slices.Equal(published, ports) {
		t.Errorf("docker-compose.yml publishes %v, the default config listens on %v", published, ports)
	}

	// The image's user: the binary runs unprivileged, its state dir its own.
	id, _ := strconv.Atoi(uid)
	home := filepath.Join(t.TempDir(), "home")
	os.Mkdir(home, 0o700)  //nolint:errcheck // checked by the server's start
	os.Chown(home, id, id) //nolint:errcheck
	// t.TempDir's directories are the test user's only: open the way.
	for d := filepath.Dir(home); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) //nolint:errcheck
	}
	a := freeAddrs(t).Dynamic()
	a.Database = filepath.Join(home, "streams.db")
	conf := filepath.Join(home, "streamhub.yml")
	os.WriteFile(conf, []byte(a.YAML("info")), 0o644) //nolint:errcheck
	os.Chown(conf, id, id)                            //nolint:errcheck
	wrapper := []string{"sh", "-c", `shift; cd "` + home + `" && exec setpriv --reuid=` + uid + ` --regid=` + uid +
		` --clear-groups ` + bin + ` "$@"`, "sh"}
	s, err := launchServerUnder(t, conf, a, wrapper...)
	if err != nil {
		t.Fatalf("the static binary as uid %s: %v\n%s", uid, err, tail(s.stderr.String(), 20))
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, "http://"+s.httpAddr+p); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	if st, err := os.Stat(a.Database); err != nil {
		t.Errorf("the registry database: %v", err)
	} else if own := st.Sys().(*syscall.Stat_t).Uid; int(own) != id {
		t.Errorf("the registry database is owned by uid %d, want %d", own, id)
	}

	if exec.Command("docker", "info").Run() != nil {
		fmt.Fprintln(os.Stderr, "NOTE TestDockerfile: no Docker daemon reachable: the image itself was not built; "+
			"its build line, static binary, user and ports were checked")
		return
	}
	out, err := exec.Command("docker", "build", "-q", "-t", "streamhub-e2e:test", "..").CombinedOutput()
	if err != nil {
		t.Errorf("docker build: %v\n%s", err, tail(string(out), 30))
	}
}
