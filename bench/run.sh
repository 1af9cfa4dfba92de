#!/usr/bin/env bash
# HTTP-FLV load benchmark: publishes a 720p30 ~2.7 Mbit/s H.264+AAC stream
# with ffmpeg (-c copy, looped), opens N readers with bench/flvload, and
# reads streamhub's CPU seconds and peak RSS from /proc.
#
#   bench/run.sh [-n 1000] [-t 20s] [-proto http|rtmp|rtsp] [-config FILE] [-baseline]
#
# -baseline also runs the same load against bench/loopback (one FLV file
# pushed in 32 KiB writes, no hub) right after, for a same-machine reference.
#
# Results go to bench/out/ (text and JSON). Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000 T=20s PROTO=http EXTRA_CONFIG="" BASELINE=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    -proto) PROTO=$2; shift 2 ;;
    -config) EXTRA_CONFIG=$2; shift 2 ;;
    -baseline) BASELINE=1; shift ;;
    *) echo "usage: $0 [-n N] [-t DURATION] [-proto http|rtmp|rtsp] [-config FILE] [-baseline]" >&2; exit 2 ;;
  esac
done
command -v ffmpeg >/dev/null || { echo "bench: ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n 8192
out=bench/out
mkdir -p "$out"

src="$out/src-720p30.flv"
if [ ! -f "$src" ]; then
  echo "bench: encoding the 720p30 test source once ($src)"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 30 \
    -c:v libx264 -preset veryfast -b:v 2550k -maxrate 2600k -bufsize 2600k -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 128k -f flv "$src"
fi

go build -o "$out/streamhub" .
go build -o "$out/flvload" ./bench/flvload
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RTMP_PORT=$(free_port) HTTP_PORT=$(free_port) RTSP_PORT=$(free_port)
conf="$out/bench.yml"
if [ -n "$EXTRA_CONFIG" ]; then cp "$EXTRA_CONFIG" "$conf"; else : > "$conf"; fi
cat >> "$conf" <<YML
log: {level: warn}
rtmp: {address: "127.0.0.1:$RTMP_PORT"}
http: {address: "127.0.0.1:$HTTP_PORT"}
rtsp: {address: "127.0.0.1:$RTSP_PORT", transports: [tcp]}
YML

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
TICK=$(getconf CLK_TCK)
c0=$(cpu); [ -n "${STRACE:-}" ] && (sleep 8; timeout 3 strace -c -f -p $SRV -o bench/out/strace.txt) &
case "$PROTO" in
  rtmp) URL="rtmp://127.0.0.1:$RTMP_PORT/live/bench" ;;
  rtsp) URL="rtsp://127.0.0.1:$RTSP_PORT/live/bench" ;;
  *) URL="http://127.0.0.1:$HTTP_PORT/live/bench.flv" ;;
esac
"$out/flvload" -url "$URL" -n "$N" -t "$T" ${RAMP:+-ramp $RAMP} -json "$out/flvload.json" | tee "$out/flvload.txt"
c1=$(cpu); cpusplit
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SRV/status")
secs=$(python3 -c "import json; print(json.load(open('$out/flvload.json'))['duration_s'])")
python3 - "$c0" "$c1" "$TICK" "$N" "${T%s}" "$hwm" <<'PY' | tee -a "$out/flvload.txt"
import sys
c0, c1, tick, n, t, hwm = map(float, sys.argv[1:])
cpu = (c1 - c0) / tick
print(f"server CPU               {cpu:.2f} s over the run; {1000*cpu/(n*t):.3f} ms per reader-second")
print(f"server peak RSS          {hwm/1024:.1f} MB")
PY

if [ -n "$BASELINE" ]; then
  kill "$PUB" "$SRV" 2>/dev/null || true
  wait 2>/dev/null || true
  go build -o "$out/loopback" ./bench/loopback
  LB_PORT=$(free_port)
  "$out/loopback" -file "$src" -addr "127.0.0.1:$LB_PORT" -duration 30s 2> "$out/loopback.log" &
  SRV=$!
  sleep 0.5
  echo "--- baseline: bench/loopback (32 KiB writes, no hub)"
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
