#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (ffmpeg, Chromium,
# srt-live-transmit, GStreamer with its RTSP, x264 and libav elements,
# Varnish and nginx, PostgreSQL, the browser-test npm packages), then runs every check: gofmt, go vet and the
# whole test suite under the race detector, the end-to-end tier (build tag
# e2e) included.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The SRT e2e tests publish and read with srt-live-transmit too.
command -v srt-live-transmit >/dev/null 2>&1 || need+=(srt-tools)
# The cache-tier e2e tests run the recipes of deploy/ in varnishd and nginx
# (in /usr/sbin, which a user's PATH may lack).
command -v varnishd >/dev/null 2>&1 || [ -x /usr/sbin/varnishd ] || need+=(varnish)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# The PostgreSQL stream registry's tests start a throwaway PostgreSQL 15
# (Debian 12's postgresql; its postinst makes the postgres user they run
# it as, and the policy-rc.d below keeps its own cluster from starting).
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The abuse suite runs the server under a lowered descriptor limit.
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
# The cluster e2e tests run the live map in a redis-server of their own.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The deploy e2e tests check the systemd unit with systemd-analyze (verify,
# security --offline) and run the binary as another user with setpriv.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# The RTSP e2e tests publish with rtspclientsink and play with rtspsrc.
gst_ok=1
command -v gst-launch-1.0 >/dev/null 2>&1 && command -v gst-inspect-1.0 >/dev/null 2>&1 || gst_ok=0
if [ "$gst_ok" -eq 1 ]; then
  for e in videotestsrc x264enc rtspclientsink rtspsrc rtph264depay h264parse avdec_h264 rtpmp4gdepay aacparse avdec_aac fakesink; do
    gst-inspect-1.0 --exists "$e" || { gst_ok=0; break; }
  done
fi
[ "$gst_ok" -eq 1 ] || need+=(gstreamer1.0-tools gstreamer1.0-rtsp gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  # Packages with a service (nginx, varnish, postgresql) must not start it: the tests
  # run their own on free ports, and a postinst that fails to bind :80
  # would fail the install. policy-rc.d answering 101 forbids the start.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -z "$policy" ] || $SUDO rm -f "$policy"
fi
if [ -f e2e/browser/package.json ]; then
  (cd e2e/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
# The ACME e2e test builds pebble and pebble-challtestsrv, the ACME test
# server (go install of the module at a fixed version, e2e/acme_test.go):
# build them once here, which puts the module and its dependencies in the
# module cache, so the test needs the Go proxy no more.
pebble_bin=$(mktemp -d)
GOBIN="$pebble_bin" GOFLAGS= go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1 \
  github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.1
rm -rf "$pebble_bin"
# The web pages' player libraries, embedded by the build (the e2e tests
# build the binary): the same step as scripts/run.sh.
web/vendor.sh

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/browser/node_modules/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
go vet -tags e2e ./...
# Tiers 1-3: unit tests, in-process servers with library clients, the fuzz
# targets' seed corpora; no external program needed.
go test -race -count=1 -timeout 10m ./...
# Tier 4 (build tag e2e): the real binary against ffmpeg, GStreamer,
# srt-live-transmit and Chromium, the abuse suite, and the FFmpeg ladder.
# -p 1: the ladder tests (transcode) time FFmpeg restarts; beside the e2e
# suite on 2 cores they missed them (TestLadderRestartAndStop).
go test -race -count=1 -p 1 -timeout 30m -tags e2e ./e2e ./transcode
