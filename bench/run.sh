#!/usr/bin/env bash
# HTTP-FLV load benchmark: publishes a 720p30 ~2.7 Mbit/s H.264+AAC stream
# with ffmpeg (-c copy, looped), opens N readers with bench/flvload, and
# reads streamhub's CPU seconds and peak RSS from /proc.
#
#   bench/run.sh [-n 1000] [-t 20s] [-proto http|rtmp|rtsp|srt|hls|webrtc] [-config FILE] [-baseline]
#   bench/run.sh -proto hls -cache varnish|nginx|nginx-nolock [-n 500] [-t 15s]
#
# -cache runs bench/cache.sh for that cache beside direct, in one run (see
# that script: origin requests per part and version, added delay, CPU).
#
# -proto rtmp, rtsp and srt open N readers of that protocol with
# bench/flvload (srt: MPEG-TS over SRT, with its continuity and receiver
# drop counts).
#
# -proto hls opens N low-latency HLS clients with bench/hlsload instead
# (blocking playlist reloads for each next part, then the part; PRELOAD=1
# adds hls.js's preload-hint part request alongside each reload) at
# /live/bench/index.m3u8; the figures are the same, per client-second.
#
# -proto webrtc opens N WHEP viewers with bench/whepload (pion, one process)
# at /live/bench/whep. WebRTC players cannot take B-frames, so this mode
# publishes its own source, the same 720p30 ~2.7 Mbit/s H.264+AAC encoded
# with -bf 0 (bench/out/src-720p30-nob.flv). The AAC makes streamhub start
# its FFmpeg audio job (AAC to Opus, a child process) at the first viewer:
# the report gives the streamhub process's CPU (the per-viewer figure), the
# children's CPU separately (/proc of every descendant, plus what reaped
# children left in cutime/cstime) and the sum. WEBRTC_UDP=ADDR sets the
# ICE UDP address (default: a free port on every address, so that the
# viewers' host candidates on the machine's interface reach it). The
# viewers send RTCP as browsers do (NACKs, receiver reports, TWCC: pion's
# default interceptors); RTCP=0 runs them without any.
#
# -baseline also runs the same load against bench/loopback right after, for
# a same-machine floor (HTTP-FLV; with -proto webrtc, bench/udpfloor: the
# same datagrams as GSO runs to N loopback sockets): one FLV file, no hub, one sender
# goroutine writing each reader the bytes of the last 100 ms in one write
# (LOOPBACK_MODE=goroutine: the older reference, a goroutine per reader
# pushing 32 KiB writes).
#
# PPROF=SECONDS builds streamhub with a go build -overlay file that adds
# net/http/pprof on a spare port (no change to the server's source), takes a
# CPU profile of that many seconds from the middle of the load and writes
# bench/out/cpu-PROTO.prof and the top functions to bench/out/pprof-PROTO.txt
# (and, at the profile's start, the heap: bench/out/heap-PROTO.prof, and
# bench/out/heap-PROTO.txt with the runtime's memory figures at its end).
# The profiler costs a little CPU itself: take the CPU figure from a run
# without it.
#
# Results go to bench/out/ (text and JSON). Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000 T=20s PROTO=http EXTRA_CONFIG="" BASELINE="" CACHE=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    -proto) PROTO=$2; shift 2 ;;
    -config) EXTRA_CONFIG=$2; shift 2 ;;
    -baseline) BASELINE=1; shift ;;
    -cache) CACHE=$2; shift 2 ;;
    *) echo "usage: $0 [-n N] [-t DURATION] [-proto http|rtmp|rtsp|hls|webrtc] [-config FILE] [-baseline] [-cache varnish|nginx|nginx-nolock]" >&2; exit 2 ;;
  esac
done
case "$PROTO" in http|rtmp|rtsp|srt|hls|webrtc) ;; *) echo "bench: -proto is http, rtmp, rtsp, srt, hls or webrtc" >&2; exit 2 ;; esac
if [ -n "$CACHE" ]; then
  [ "$PROTO" = hls ] || { echo "bench: -cache is for -proto hls" >&2; exit 2; }
  exec bench/cache.sh -n "$N" -t "$T" -targets "direct $CACHE"
fi
if [ "$PROTO" != http ] && [ "$PROTO" != rtmp ] && [ "$PROTO" != rtsp ] && [ "$PROTO" != webrtc ] && [ -n "$BASELINE" ]; then echo "bench: -baseline is for HTTP-FLV, RTMP, RTSP and WebRTC" >&2; exit 2; fi
command -v ffmpeg >/dev/null || { echo "bench: ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n 8192
out=bench/out
mkdir -p "$out"

src="$out/src-720p30.flv" BF=()
if [ "$PROTO" = webrtc ]; then src="$out/src-720p30-nob.flv" BF=(-bf 0); fi
if [ ! -f "$src" ]; then
  echo "bench: encoding the 720p30 test source once ($src)"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 30 \
    -c:v libx264 -preset veryfast "${BF[@]}" -b:v 2550k -maxrate 2600k -bufsize 2600k -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 128k -f flv "$src"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RTMP_PORT=$(free_port) HTTP_PORT=$(free_port) RTSP_PORT=$(free_port) SRT_PORT=$(free_udp_port)
WEBRTC_UDP=${WEBRTC_UDP:-":$(free_udp_port)"}
if [ -n "${PPROF:-}" ]; then
  # An extra file in package main, given to the compiler through -overlay:
  # the checkout stays as it is.
  PPROF_PORT=$(free_port)
  mkdir -p "$out/_pprof" # "_": go build ./... skips the directory
  cat > "$out/_pprof/overlay.go" <<'GO'
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if a := os.Getenv("STREAMHUB_PPROF"); a != "" {
		go http.ListenAndServe(a, nil) //nolint:errcheck
	}
}
GO
  printf '{"Replace":{"%s":"%s"}}\n' "$PWD/zz_bench_pprof.go" "$PWD/$out/_pprof/overlay.go" > "$out/pprof_overlay.json"
  CGO_ENABLED=0 go build -overlay "$out/pprof_overlay.json" -o "$out/streamhub" .
  export STREAMHUB_PPROF="127.0.0.1:$PPROF_PORT"
else
  CGO_ENABLED=0 go build -o "$out/streamhub" .
fi
LOADER=flvload
[ "$PROTO" = hls ] && LOADER=hlsload
[ "$PROTO" = webrtc ] && LOADER=whepload
go build -o "$out/$LOADER" "./bench/$LOADER"
conf="$out/bench.yml"
# Every reader of the load tool comes from 127.0.0.1: no per-address cap
# (limits.maxConnsPerAddress, 200 by default), unless -config sets limits.
if [ -n "$EXTRA_CONFIG" ]; then cp "$EXTRA_CONFIG" "$conf"; else : > "$conf"; fi
grep -q '^limits:' "$conf" || echo 'limits: {maxConnsPerAddress: 0}' >> "$conf"
cat >> "$conf" <<YML
log: {level: warn}
rtmp: {address: "127.0.0.1:$RTMP_PORT"}
http: {address: "127.0.0.1:$HTTP_PORT"}
rtsp: {address: "127.0.0.1:$RTSP_PORT", transports: [tcp]}
srt: {address: "127.0.0.1:$SRT_PORT"}
streams: {database: "$out/streams.db"}
YML
grep -q '^webrtc:' "$conf" || echo "webrtc: {udpAddress: \"$WEBRTC_UDP\", tcpAddress: \"\"}" >> "$conf"

"$out/streamhub" --config "$conf" > "$out/server.log" 2>&1 &
SRV=$!
cleanup() { kill "$PUB" 2>/dev/null || true; kill "$SRV" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
sleep 0.5
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$src" -c copy -f flv "rtmp://127.0.0.1:$RTMP_PORT/live/bench" > "$out/publisher.log" 2>&1 &
PUB=$!
sleep 5 # gortmplib reads 2 s of media to find the tracks; then let the GOP cache fill

cpu() { awk '{print $14+$15}' "/proc/$SRV/stat"; }
cpusplit() { awk '{print "utime " $14 " stime " $15}' "/proc/$SRV/stat"; }
# kids prints "PID TICKS" for every live descendant of the server and
# "reaped TICKS" for the children it has waited for (cutime+cstime).
kids() {
  python3 - "$SRV" <<'PY'
import os, sys
root = sys.argv[1]
procs = {}
for p in os.listdir('/proc'):
    if not p.isdigit():
        continue
    try:
        st = open(f'/proc/{p}/stat').read()
    except OSError:
        continue
    f = st[st.rindex(')') + 2:].split()
    procs[p] = (f[1], int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))  # ppid, utime+stime, cutime+cstime
print('reaped', procs.get(root, (0, 0, 0))[2])
todo = [root]
while todo:
    parent = todo.pop()
    for p, (pp, t, _) in procs.items():
        if pp == parent:
            print(p, t)
            todo.append(p)
PY
}
kidshwm() { for p in $(kids | awk '$1 != "reaped" {print $1}'); do awk '/VmHWM/ {s += $2} END {print s + 0}' "/proc/$p/status" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }
TICK=$(getconf CLK_TCK)
k0=$(kids)
c0=$(cpu); [ -n "${STRACE:-}" ] && (sleep 8; timeout 3 strace -c -f -p $SRV -o bench/out/strace.txt) &
case "$PROTO" in
  rtmp) URL="rtmp://127.0.0.1:$RTMP_PORT/live/bench" ;;
  rtsp) URL="rtsp://127.0.0.1:$RTSP_PORT/live/bench" ;;
  srt) URL="srt://127.0.0.1:$SRT_PORT/live/bench" ;;
  webrtc) URL="http://127.0.0.1:$HTTP_PORT/live/bench/whep" ;;
  hls) URL="http://127.0.0.1:$HTTP_PORT/live/bench/index.m3u8" ;;
  *) URL="http://127.0.0.1:$HTTP_PORT/live/bench.flv" ;;
esac
if [ -n "${PPROF:-}" ]; then
  # From the middle of the load: after the ramp (2 s by default) and a settling second.
  ( sleep "${PPROF_AFTER:-4}"
    # The heap, its size classes and the goroutine stacks at that moment.
    curl -s -o "$out/heap-$PROTO.txt" "http://$STREAMHUB_PPROF/debug/pprof/heap?debug=1"
    curl -s -o "$out/heap-$PROTO.prof" "http://$STREAMHUB_PPROF/debug/pprof/heap"
    curl -s -o "$out/cpu-$PROTO.prof" "http://$STREAMHUB_PPROF/debug/pprof/profile?seconds=$PPROF" &&
      go tool pprof -top -nodecount=40 "$out/streamhub" "$out/cpu-$PROTO.prof" > "$out/pprof-$PROTO.txt" 2>&1 ) &
  PPROF_JOB=$!
fi
UNIT=reader
if [ "$PROTO" = webrtc ]; then
  UNIT=viewer
  "$out/whepload" -url "$URL" -n "$N" -t "$T" ${RAMP:+-ramp $RAMP} ${RTCP:+-rtcp=$([ "$RTCP" = 0 ] && echo false || echo true)} -json "$out/whepload.json" | tee "$out/whepload.txt"
elif [ "$PROTO" = hls ]; then
  UNIT=client
  "$out/hlsload" -url "$URL" -n "$N" -t "$T" ${RAMP:+-ramp $RAMP} ${PRELOAD:+-preload} -json "$out/hlsload.json" | tee "$out/hlsload.txt"
else
  "$out/flvload" -url "$URL" -n "$N" -t "$T" ${RAMP:+-ramp $RAMP} -json "$out/flvload.json" | tee "$out/flvload.txt"
fi
c1=$(cpu); k1=$(kids); cpusplit
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SRV/status")
khwm=$(kidshwm)
python3 - "$c0" "$c1" "$TICK" "$N" "${T%s}" "$hwm" "$UNIT" "$khwm" "$k0" "$k1" <<'PY' | tee -a "$out/$LOADER.txt"
import sys
c0, c1, tick, n, t, hwm = map(float, sys.argv[1:7])
unit, khwm = sys.argv[7], float(sys.argv[8])
def parse(s):
    return {a: int(b) for a, b in (l.split() for l in s.splitlines() if l.strip())}
k0, k1 = parse(sys.argv[9]), parse(sys.argv[10])
kids = sum(v - k0.get(p, 0) for p, v in k1.items()) / tick
live = len([p for p in k1 if p != 'reaped'])
cpu = (c1 - c0) / tick
print(f"server CPU               {cpu:.2f} s over the run; {1000*cpu/(n*t):.3f} ms per {unit}-second (streamhub process only)")
print(f"server peak RSS          {hwm/1024:.1f} MB")
if kids > 0 or live:
    print(f"children CPU             {kids:.2f} s over the run ({live} live at the end: FFmpeg jobs); {1000*kids/(n*t):.3f} ms per {unit}-second")
    print(f"server + children CPU    {cpu+kids:.2f} s; {1000*(cpu+kids)/(n*t):.3f} ms per {unit}-second")
    print(f"children peak RSS        {khwm/1024:.1f} MB (sum of the live ones)")
PY
if [ -n "${PPROF:-}" ]; then
  wait "$PPROF_JOB" || true
  echo "profile: $out/cpu-$PROTO.prof, top: $out/pprof-$PROTO.txt"
fi

if [ -n "$BASELINE" ] && [ "$PROTO" = webrtc ]; then
  kill "$PUB" "$SRV" 2>/dev/null || true
  wait 2>/dev/null || true
  go build -o "$out/udpfloor" ./bench/udpfloor
  echo "--- baseline: bench/udpfloor (the same datagrams to N loopback sockets, GSO runs and sendmmsg, no SRTP, no hub)"
  "$out/udpfloor" -n "$N" -t "$T" | tee -a "$out/whepload.txt"
elif [ -n "$BASELINE" ]; then
  kill "$PUB" "$SRV" 2>/dev/null || true
  wait 2>/dev/null || true
  go build -o "$out/loopback" ./bench/loopback
  LB_PORT=$(free_port)
  "$out/loopback" -file "$src" -addr "127.0.0.1:$LB_PORT" -duration 30s -mode "${LOOPBACK_MODE:-pass}" 2> "$out/loopback.log" &
  SRV=$!
  sleep 0.5
  echo "--- baseline: bench/loopback -mode ${LOOPBACK_MODE:-pass} (no hub; pass: one sender, a write per reader per 100 ms)"
  c0=$(cpu)
  "$out/flvload" -url "http://127.0.0.1:$LB_PORT/live/bench.flv" -n "$N" -t "$T" ${RAMP:+-ramp $RAMP} -json "$out/loopback.json" | grep -E "connected|throughput"
  c1=$(cpu); cpusplit
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SRV/status")
  python3 - "$c0" "$c1" "$TICK" "$N" "${T%s}" "$hwm" <<'PY' | tee -a "$out/flvload.txt"
import sys
c0, c1, tick, n, t, hwm = map(float, sys.argv[1:])
cpu = (c1 - c0) / tick
print(f"baseline CPU             {cpu:.2f} s over the run; {1000*cpu/(n*t):.3f} ms per reader-second")
print(f"baseline peak RSS        {hwm/1024:.1f} MB")
PY
fi
