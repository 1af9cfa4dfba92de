// Command streamhub is a live media server in one static binary: RTMP, SRT,
// RTSP and WebRTC (WHIP) in; HTTP-FLV, LL-HLS, RTSP, RTMP, SRT and WebRTC
// (WHEP) out; a GOP cache for instant start and an FFmpeg bitrate ladder.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/streamhub/streamhub/api"
	"github.com/streamhub/streamhub/auth"
	"github.com/streamhub/streamhub/cluster"
	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/hls"
	"github.com/streamhub/streamhub/protocols/httpflv"
	"github.com/streamhub/streamhub/protocols/rtmp"
	"github.com/streamhub/streamhub/protocols/rtsp"
	"github.com/streamhub/streamhub/protocols/srt"
	"github.com/streamhub/streamhub/protocols/webrtc"
	"github.com/streamhub/streamhub/record"
	"github.com/streamhub/streamhub/registry"
	"github.com/streamhub/streamhub/server"
	"github.com/streamhub/streamhub/tlscert"
	"github.com/streamhub/streamhub/transcode"
	"github.com/streamhub/streamhub/web"
)

// version is the release; builds from a checkout add the VCS revision.
const version = "0.1.0-dev"

// shutdownTimeout bounds the graceful part of a shutdown; the process exits
// within 3 s of SIGINT/SIGTERM.
const shutdownTimeout = 2 * time.Second

func main() {
	if err := newRootCmd(os.Stdout, os.Stderr).Execute(); err != nil {
		os.Exit(1)
	}
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var configFile string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (the default command)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), configFile, stderr)
		},
	}
	serve.Flags().StringVar(&configFile, "config", "", "configuration file (default: the embedded config.yml)")

	root := &cobra.Command{
		Use:           "streamhub",
		Short:         "Live media server: RTMP, SRT, RTSP and WHIP in; HTTP-FLV, LL-HLS, RTSP, RTMP, SRT and WHEP out",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE:          serve.RunE,
	}
	root.Flags().StringVar(&configFile, "config", "", "configuration file (default: the embedded config.yml)")
	root.SetOut(stdout)
	root.SetErr(stderr)

	versionCmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version and the module versions of the build",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), versionLong())
		},
	}
	configCmd := &cobra.Command{Use: "config", Short: "Check or print configuration"}
	configCmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate FILE and print every problem with its key (exit 1 on error)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := readConfigFile(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n", args[0])
			return nil
		},
	}, &cobra.Command{
		Use:   "reference",
		Short: "Print the configuration reference (docs/configuration.md) made from the embedded config.yml",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ref, err := configReference(defaultConfigYAML)
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), ref)
			return err
		},
	}, &cobra.Command{
		Use:   "default",
		Short: "Print the embedded default config.yml",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			cmd.OutOrStdout().Write(defaultConfigYAML) //nolint:errcheck // stdout
		},
	})
	root.AddCommand(serve, versionCmd, configCmd, newRegistryCmd())
	return root
}

func versionString() string {
	v := "streamhub " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}

// newLogger returns the logger of c, whose level is lvl's: a reload sets
// lvl (setLogLevel).
func newLogger(c LogConfig, w io.Writer, lvl *slog.LevelVar) *slog.Logger {
	setLogLevel(lvl, c.Level)
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// setLogLevel sets lvl to a validated log.level.
func setLogLevel(lvl *slog.LevelVar, level string) {
	var l slog.Level
	l.UnmarshalText([]byte(level)) //nolint:errcheck // validated
	lvl.Set(l)
}

// runServe runs the server until ctx is done or SIGINT/SIGTERM arrives.
func runServe(ctx context.Context, configFile string, logOut io.Writer) error {
	conf, err := readConfigFile(configFile)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup, stopHUP := notifyHUP()
	defer stopHUP()
	var logLevel slog.LevelVar
	log := newLogger(conf.Log, logOut, &logLevel)
	// live is the running config: the hub, the ladder and the sources
	// read path settings through it, so a reload (reload.go) reaches new
	// sessions without touching running ones. conf stays the config of
	// the start, for what only a restart changes.
	// It starts as a copy: the listeners write the addresses they bound
	// into conf, which a reload must not take for a change of the file.
	var live atomic.Pointer[Config]
	started := *conf
	live.Store(&started)
	log.Info("starting", "version", versionString())

	reg, err := registry.New(ctx, registry.Options{Database: conf.Streams.Database, Prefix: conf.Streams.Prefix,
		Open: conf.Streams.Open, Timeout: conf.Streams.DatabaseTimeout, Logger: log})
	if err != nil {
		return err
	}
	defer reg.Close()
	var (
		sources *rtsp.Sources
		ladder  *transcode.Manager
		node    *cluster.Node // a standalone node's methods do nothing
	)
	var signer *auth.Signer
	hc := server.HubConfig{PathConfig: func(p string) server.PathConfig { return live.Load().PathConfig(p) },
		Logger: log, ResolvePublish: reg.Resolve, AuthFailures: guard.NewBudget(conf.Auth.FailureBudget, time.Minute)}
	var hook atomic.Pointer[auth.Hook] // nil: no hook; auth.hookURL is hot
	setHook := func(c *Config) {
		if c.Auth.HookURL == "" {
			hook.Store(nil)
			return
		}
		hook.Store(auth.NewHook(c.Auth.HookURL, c.Auth.HookTimeout))
	}
	setHook(conf)
	hc.Authorize = func(ctx context.Context, req server.AuthRequest) error {
		if h := hook.Load(); h != nil {
			return h.Authorize(ctx, req)
		}
		return nil
	}
	if conf.Auth.PlaySecret != "" {
		signer = auth.NewSigner(conf.Auth.PlaySecret, conf.Auth.SignedPlayOnly)
		hc.ReadToken = signer.Check
	}
	hc.OnDemand = func(path string) bool { return sources.Demand(path) || ladder.Demand(path) || node.Demand(path) }
	if conf.Cluster.Enabled() { // no cluster section: the hub as without one
		hc.PublishGuard = clusterGuard{&node}
		hc.RelayKey = func(path, key string) (bool, error) { return node.RelayKey(path, key) }
		hc.LiveElsewhere = func(path string) bool { return node.LiveElsewhere(path) }
	}
	recConf := conf.Record
	recConf.WriteTimeout = conf.HTTP.WriteTimeout
	rec := record.New(recConf, nil, log) // its hub is set below
	hc.OnPublish = func(path string, derived bool) { ladder.OnPublish(path, derived); rec.OnPublish(path, derived) }
	hc.OnUnpublish = func(path string, derived bool) { ladder.OnUnpublish(path, derived) }
	hub := server.NewHub(hc)
	rec.SetHub(hub)
	reg.Watch(func(id string) { // a key rotated or a stream deleted through another node
		if hub.KickPublisher(reg.Path(id)) {
			log.Info("stream key revoked on another node: publisher kicked", "id", id)
		}
	})
	sources = rtsp.NewSources(conf.RTSPServerConfig(), hub, log)
	ladder = transcode.New(conf.Transcode, hub, log, func(p string) transcode.Plan { return live.Load().LadderPlan(p) })
	node = cluster.New(conf.Cluster, hub, func(ctx context.Context, addr, path, key string) (cluster.Upstream, error) {
		up, err := rtmp.DialUpstream(ctx, addr, path, key, conf.RTMP.ReadTimeout)
		if err != nil {
			return nil, err
		}
		return rtmpUpstream{up}, nil
	}, log)
	// The components, started in this order and closed in reverse; one
	// with an empty address is off. Adding a protocol: its package, its
	// config section, one entry here.
	var comps []component
	// The certificate of HTTPS, RTMPS and RTSPS (issue 19): files, or ACME.
	var certs *tlscert.Manager
	if tc := conf.TLSConfig(); tc.Enabled() {
		if certs, err = tlscert.New(tc, log); err != nil {
			return err
		}
	}
	if conf.RTMP.Address != "" || conf.RTMP.TLSAddress != "" {
		rc := conf.RTMPServerConfig()
		if rc.TLSAddress != "" {
			rc.TLS = certs.TLSConfig()
		}
		rtmpSrv := rtmp.New(rc, hub, log)
		comps = append(comps, component{name: "rtmp", start: rtmpSrv.Start, close: rtmpSrv.Close,
			bound: func() {
				if a := rtmpSrv.Addr(); a != nil {
					conf.RTMP.Address = a.String()
				}
			}})
	}
	if conf.RTSP.Address != "" {
		rc := conf.RTSPServerConfig()
		if rc.TLSAddress != "" {
			rc.TLS = certs.TLSConfig()
		}
		rc.DigestHA1 = func(path string) (string, []byte, bool) { return registryDigest(reg, path) }
		rtspSrv := rtsp.New(rc, hub, log)
		comps = append(comps, component{name: "rtsp", close: rtspSrv.Close, start: func() error {
			if err := rtspSrv.Start(); err != nil {
				return fmt.Errorf("%w (rtsp.address, rtsp.udpRTPAddress, rtsp.udpRTCPAddress)", err)
			}
			return nil
		}, bound: func() { conf.RTSP.Address = rtspSrv.Addr().String() }})
	}
	if conf.SRT.Address != "" {
		srtSrv := srt.New(conf.SRTServerConfig(), hub, log)
		comps = append(comps, component{name: "srt", start: srtSrv.Start, close: srtSrv.Close,
			bound: func() { conf.SRT.Address = srtSrv.Addr().String() }})
	}
	var rtcH http.Handler // nil when webrtc is off
	if conf.WebRTC.Enabled {
		wc, err := conf.WebRTCServerConfig()
		if err != nil {
			return err
		}
		wc.OpusPath = ladder.OpusPath // AAC sources: the transcode audio job
		wc.AACConfig = transcode.AACConfig
		wc.AACEncoder = func(path string, opus, aac *media.Track, write func(*media.Unit)) (webrtc.AudioEncoder, error) {
			enc, err := ladder.NewAACEncoder(path, opus, aac, write) // Opus publishers: the job in reverse
			if err != nil {
				return nil, err
			}
			return enc, nil
		}
		rtc := webrtc.New(wc, hub, log)
		rtcH = rtc
		comps = append(comps, component{name: "webrtc", start: rtc.Start, close: rtc.Close})
	}
	ops := &opsState{}
	ops.reload = newReloader(configFile, &live, func(old, cur *Config) {
		setLogLevel(&logLevel, cur.Log.Level)
		if old.Auth.HookURL != cur.Auth.HookURL || old.Auth.HookTimeout != cur.Auth.HookTimeout {
			setHook(cur) // a new hook forgets the reads it allowed: only when it changed
		}
		ladder.Update(cur.Transcode)
		if h := ops.hls.Load(); h != nil {
			h.SetMuxerConfig(cur.HLSServerConfig())
		}
		sources.StartAlways(cur.SourcePaths()) // a new always-pulled source; running ones go on
	}, log)
	if conf.Cluster.Enabled() {
		comps = append(comps, component{name: "cluster", start: node.Start, close: node.Close})
	}
	// The recorder starts before the listeners (recovery first) and closes
	// after them, once hub.Close ended its readers and segments.
	if conf.Recording() {
		comps = append([]component{{name: "record", start: rec.Start, close: rec.Close}}, comps...)
	}
	httpDone := make(chan error, 1)
	if conf.HTTP.Address != "" {
		comps = append(comps, httpComponent(conf, hub, reg, ladder, signer, rtcH, certs, node, rec, log, httpDone, ops))
	}
	for i, c := range comps {
		if err := c.start(); err != nil {
			for j := i - 1; j >= 0; j-- {
				comps[j].close()
			}
			return err
		}
		if c.bound != nil {
			c.bound() // the URLs the API hands out name the port bound (":0" in tests)
		}
	}
	for _, off := range []struct{ name, addr string }{{"rtmp", conf.RTMP.Address}, {"rtsp", conf.RTSP.Address},
		{"srt", conf.SRT.Address}, {"http", conf.HTTP.Address}} {
		if off.addr == "" {
			log.Info("listener off", "proto", off.name, "key", off.name+".address")
		}
	}
	sources.StartAlways(conf.SourcePaths())
	ops.ready.Store(true)
	log.Info("ready")
	watchDone := make(chan struct{})
	go watchReload(ctx, ops.reload, hup, watchDone)

	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case err = <-httpDone:
		log.Error("http server failed", "err", err)
	}
	stop()
	ops.ready.Store(false)
	<-watchDone

	// Stop accepting, end sessions, exit within 3 s: one shutdown path.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// End the streams first: their readers (an LL-HLS player nearly
		// always has a blocking request open) end with them, which the
		// HTTP server's Shutdown would otherwise wait out.
		sources.Close()
		node.Close() // ends the pulls; gives the paths held in the live map back
		hub.Close()
		ladder.Close() // closes each FFmpeg's stdin; the parent-death signal ends any left at exit
		for i := len(comps) - 1; i >= 0; i-- {
			comps[i].close()
		}
	}()
	select {
	case <-done:
	case <-sctx.Done():
		log.Warn("shutdown timed out; exiting anyway")
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// component is one part of the server that listens or works on its own:
// runServe starts the components in order and closes them in reverse.
type component struct {
	name  string
	start func() error
	close func()
	// bound, if set, puts the address the listener bound into the config
	// once started, for the components built after it (the API's URLs).
	bound func()
}

// httpComponent serves HTTP-FLV, LL-HLS, the API, /metrics and the web
// pages on http.address, over TLS (HTTP/2 and HTTP/1.1) with certs' certificate
// when certs is not nil. Its Serve error goes to done.
func httpComponent(conf *Config, hub *server.Hub, reg registry.Registry, ladder *transcode.Manager, signer *auth.Signer,
	rtcH http.Handler, certs *tlscert.Manager, node *cluster.Node, rec *record.Recorder, log *slog.Logger, done chan<- error, ops *opsState) component {
	// Built at start, after the other components bound their addresses.
	var (
		flv     *httpflv.Handler
		hlsH    *hls.Handler
		webH    *web.Handler
		httpSrv *http.Server
	)
	return component{name: "http",
		start: func() error {
			rawLn, err := net.Listen("tcp", conf.HTTP.Address)
			if err != nil {
				return fmt.Errorf("http: listen on %s (http.address): %w", conf.HTTP.Address, err)
			}
			conf.HTTP.Address = rawLn.Addr().String()
			flv, hlsH, webH, httpSrv = httpHandlers(conf, hub, reg, ladder, signer, rtcH, node, rec, log, ops)
			ln := guard.Listen(rawLn, guard.ListenerConfig{Name: "http", MaxPerAddr: conf.Limits.MaxConnsPerAddress, Log: log})
			if certs != nil {
				// ServeTLS with TLSConfig's certificate: it keeps "h2" in
				// NextProtos and serves HTTP/2 (LL-HLS on Apple devices).
				httpSrv.TLSConfig = certs.TLSConfig("h2", "http/1.1")
			}
			go func() {
				if certs != nil {
					done <- httpSrv.ServeTLS(ln, "", "")
					return
				}
				done <- httpSrv.Serve(ln)
			}()
			log.Info("listening", "proto", "http", "address", ln.Addr().String(), "tls", certs != nil)
			return nil
		},
		close: func() {
			if httpSrv == nil {
				return
			}
			flv.Close()
			hlsH.Close()
			webH.Close() // chat connections are hijacked: Shutdown does not see them
			sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			httpSrv.Shutdown(sctx) //nolint:errcheck // closed below anyway
			httpSrv.Close()
		},
	}
}

// registryDigest returns the RTSP Digest user name and HA1 of the
// registered stream at path (<prefix>/<id>, or a path under it): the user
// name is the stream id.
func registryDigest(reg registry.Registry, path string) (string, []byte, bool) {
	rest, ok := strings.CutPrefix(path, reg.Prefix()+"/")
	if !ok {
		return "", nil, false
	}
	id, _, _ := strings.Cut(rest, "/")
	ha1, err := reg.DigestHA1(id)
	return id, ha1, err == nil
}

// httpHandlers builds what the HTTP listener serves: HTTP-FLV, LL-HLS, the
// API, /metrics, WHIP/WHEP (rtcH, nil when off) and the web pages.
func httpHandlers(conf *Config, hub *server.Hub, reg registry.Registry, ladder *transcode.Manager, signer *auth.Signer,
	rtcH http.Handler, node *cluster.Node, rec *record.Recorder, log *slog.Logger, ops *opsState) (*httpflv.Handler, *hls.Handler, *web.Handler, *http.Server) {
	flv := httpflv.New(httpflv.Config{WriteTimeout: conf.HTTP.WriteTimeout}, hub, log)
	hlsConf := conf.HLSServerConfig()
	hlsConf.ShareSecret = conf.Auth.PlaySecret // share values survive a restart when links are signed
	hlsConf.Renditions = func(path string) []hls.Rendition {
		var out []hls.Rendition
		for _, r := range ladder.Renditions(path) {
			out = append(out, hls.Rendition{Name: r.Name, Bandwidth: r.Bandwidth, AverageBandwidth: r.AverageBandwidth})
		}
		return out
	}
	hlsH := hls.New(hlsConf, hub, log)
	ops.hls.Store(hlsH)
	apiConf := api.Config{AdminToken: conf.API.AdminToken, PublicHost: conf.API.PublicHost,
		RTMPAddr: conf.RTMP.Address, RTSPAddr: conf.RTSP.Address, SRTAddr: conf.SRT.Address, HTTPAddr: conf.HTTP.Address,
		HTTPS: conf.TLSConfig().Enabled(), Version: versionString(), Signer: signer, Reloader: ops.reload,
		Recording: recordingStatus(conf, rec)}
	metricsExtra := []prometheus.Collector{api.RegistryCollector(reg), api.ReloadMetrics(ops.reload), rec}
	if node != nil && conf.Cluster.Enabled() {
		apiConf.Cluster = func() any { return node.Status() }
		metricsExtra = append(metricsExtra, node)
	}
	apiH := api.New(apiConf, hub, reg, ladder, log)
	wc := conf.WebServerConfig()
	wc.Renditions = func(path string) []string {
		var out []string
		for _, r := range ladder.Rungs(path) {
			out = append(out, r.Name)
		}
		return out
	}
	wc.Viewers = func(path string) int {
		s := hub.Stream(path)
		if s == nil {
			return 0
		}
		n := 0
		for proto, k := range s.Stats().ReadersByProtocol {
			if proto != "transcode" {
				n += k
			}
		}
		return n
	}
	if conf.Recording() {
		wc.Rewind = func(path string) time.Duration { // the watch page's rewind and recordings list
			if pc := hub.PathConfig(path); pc.Record { // the running config (hot reload)
				return pc.RewindWindow
			}
			return 0
		}
	}
	webH := web.NewWithConfig(hub, wc, log)
	// Every connection has a deadline: headers and body within
	// readTimeout, an idle keep-alive closed after idleTimeout, a response
	// written within a blocking HLS wait plus writeTimeout. HTTP-FLV and
	// chat take their connections over (hijack) and set their own.
	httpSrv := &http.Server{
		Handler:           guard.HTTPHandler(log, ops.routes(router(flv, hlsH, withRecordings(apiH, rec), api.Metrics(hub, ladder, hlsH.Responses, metricsExtra...), webH, rtcH))),
		ReadHeaderTimeout: min(10*time.Second, conf.HTTP.ReadTimeout),
		ReadTimeout:       conf.HTTP.ReadTimeout,
		WriteTimeout:      conf.HLS.BlockTimeout + conf.HTTP.WriteTimeout,
		IdleTimeout:       conf.HTTP.IdleTimeout,
		ErrorLog:          httpErrorLog(log),
	}
	return flv, hlsH, webH, httpSrv
}

// recordingStatus is the API's view of the recorder, nil when no path
// records.
func recordingStatus(conf *Config, rec *record.Recorder) func(string) any {
	if !conf.Recording() {
		return nil
	}
	return func(path string) any { return rec.PathStatus(path) }
}

// withRecordings sends the playback API (/api/v1/recordings...) to the
// recorder and the rest of /api/ to the API.
func withRecordings(apiH http.Handler, rec *record.Recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if record.IsRecordings(r.URL.Path) {
			rec.ServeHTTP(w, r)
			return
		}
		apiH.ServeHTTP(w, r)
	})
}

// router sends /api/ to the API, /metrics to Prometheus, /PATH.flv to
// HTTP-FLV, /PATH/*.m3u8 and *.mp4 to HLS, /PATH/whip and /PATH/whep (and
// their sessions) to WebRTC when rtc is not nil, and everything else to
// the web pages.
func router(flv, hlsH, apiH, metrics, web, rtc http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/"):
			apiH.ServeHTTP(w, r)
		case r.URL.Path == "/metrics":
			metrics.ServeHTTP(w, r)
		case strings.HasSuffix(r.URL.Path, ".flv"):
			flv.ServeHTTP(w, r)
		case hls.IsHLS(r.URL.Path):
			hlsH.ServeHTTP(w, r)
		case rtc != nil && webrtc.IsWebRTC(r.URL.Path): // issue 14
			rtc.ServeHTTP(w, r)
		default:
			web.ServeHTTP(w, r)
		}
	})
}

// clusterGuard is the hub's PublishGuard: the cluster node, built after
// the hub it needs.
type clusterGuard struct{ n **cluster.Node }

func (g clusterGuard) Acquire(ctx context.Context, path string) error {
	return (*g.n).Acquire(ctx, path)
}
func (g clusterGuard) Release(path string) { (*g.n).Release(path) }

// rtmpUpstream is an RTMP pull as the cluster runs it.
type rtmpUpstream struct{ *rtmp.Upstream }

func (u rtmpUpstream) Run(w cluster.Writer) error { return u.Upstream.Run(w) }
