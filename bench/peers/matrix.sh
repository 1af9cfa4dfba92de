#!/usr/bin/env bash
# The peer lab's matrix: streamhub, SRS and mediamtx measured in one run,
# interleaved, each cell on a fresh server process with its own config on
# free loopback ports. A cell is: start the server, publish the 720p30
# H.264/AAC source with one `ffmpeg -re -stream_loop -1 -c copy` over RTMP,
# wait 5 s (track probing, GOP cache), then N readers of one protocol ramped
# in over RAMP (bench/flvload), and read the server's utime+stime over the
# load window (and over its second half alone, the steady state with the
# joins done) and its peak RSS (VmHWM) from /proc.
#
#   bench/peers/matrix.sh [-rounds 3] [-t 20s] [-protos "flv rtmp rtsp srt"]
#                         [-servers "streamhub srs mediamtx loopback"]
#                         [-streamhub NAME=BINARY]... [-n PROTO=N]... [-out DIR]
#
# Readers per protocol default to flv=1000 rtmp=1000 rtsp=200 srt=200.
# Protocols per server: streamhub all four; SRS flv and rtmp (built with
# --srt=off, it has no SRT, and it serves no RTSP); mediamtx rtmp, rtsp and
# srt (it has no HTTP-FLV); loopback (bench/loopback, the floor: one sender
# writing each reader the last 100 ms of the FLV file in one write, no hub)
# flv only.
#
# -streamhub NAME=BINARY adds a streamhub build under its own name (repeat
# it to compare builds, e.g. before=/tmp/old after=/tmp/new; the servers
# list then names them instead of "streamhub"). Without it, the tree this
# script is in is built as "streamhub".
#
# The peers come from bench/peers/build.sh: PEERS_DIR (default
# /work/scratch/peers) holds bin/srs and bin/mediamtx. SRS runs with its
# defaults but for the ports, max_connections and logs: among them
# gop_cache on and mw_latency 350 ms (its merged-write batching; SRS_MW=MS
# sets another). mediamtx runs with its defaults but for the ports,
# logLevel warn, RTSP over TCP only, and HLS, WebRTC, MoQ off.
#
# Results: DIR/cells.jsonl (one line per cell: the flvload summary, CPU,
# RSS, load average), DIR/table.md (medians over the rounds) and
# DIR/table.json; DIR defaults to bench/out/peers/DATE.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARGS="$*"
ROUNDS=3 T=20s RAMP=${RAMP:-1s} PROTOS="flv rtmp rtsp srt" SERVERS="" OUT=""
PEERS_DIR=${PEERS_DIR:-/work/scratch/peers}
declare -A N=([flv]=1000 [rtmp]=1000 [rtsp]=200 [srt]=200)
declare -A HUB=()
HUBS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -rounds) ROUNDS=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    -protos) PROTOS=$2; shift 2 ;;
    -servers) SERVERS=$2; shift 2 ;;
    -streamhub) HUB[${2%%=*}]=${2#*=}; HUBS+=("${2%%=*}"); shift 2 ;;
    -n) N[${2%%=*}]=${2#*=}; shift 2 ;;
    -out) OUT=$2; shift 2 ;;
    *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
command -v ffmpeg >/dev/null || { echo "matrix: ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
OUT=${OUT:-bench/out/peers/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
src=bench/out/src-720p30.flv
mkdir -p bench/out
if [ ! -f "$src" ]; then
  # The same source as bench/run.sh.
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 30 \
    -c:v libx264 -preset veryfast -b:v 2550k -maxrate 2600k -bufsize 2600k -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 128k -f flv "$src"
fi
go build -o "$OUT/flvload" ./bench/flvload
go build -o "$OUT/loopback" ./bench/loopback
if [ ${#HUBS[@]} -eq 0 ]; then
  CGO_ENABLED=0 go build -o "$OUT/streamhub" . && HUB[streamhub]=$OUT/streamhub && HUBS=(streamhub)
fi
SERVERS=${SERVERS:-"${HUBS[*]} srs mediamtx loopback"}
for s in $SERVERS; do
  case "$s" in
    srs|mediamtx) [ -x "$PEERS_DIR/bin/$s" ] || { echo "matrix: $PEERS_DIR/bin/$s is missing: run bench/peers/build.sh" >&2; exit 1; } ;;
    loopback) ;;
    *) [ -n "${HUB[$s]:-}" ] || { echo "matrix: unknown server $s (streamhub builds are named by -streamhub NAME=BINARY)" >&2; exit 1; } ;;
  esac
done
[ -f "$PEERS_DIR/versions.txt" ] && cp "$PEERS_DIR/versions.txt" "$OUT/"
git log -1 --format='streamhub tree %H %s' > "$OUT/run.txt"
for h in "${HUBS[@]}"; do echo "streamhub build $h = ${HUB[$h]}" >> "$OUT/run.txt"; done
echo "command: ${RAMP:+RAMP=$RAMP }${SRS_MW:+SRS_MW=$SRS_MW }$0 $ARGS" >> "$OUT/run.txt"
SRC_KBPS=$(python3 -c "
import json,subprocess,sys
d=float(subprocess.check_output(['ffprobe','-v','error','-show_entries','format=duration','-of','csv=p=0','$src']))
import os; print(round(os.path.getsize('$src')*8/1000/d))")

# ports prints free loopback ports, distinct: three TCP, then two UDP (all
# held open together while they are picked, so none comes out twice).
ports() {
  python3 -c '
import socket
ss = [socket.socket() for _ in range(3)] + [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'
}

supports() { # server proto
  case "$1:$2" in
    srs:flv|srs:rtmp) return 0 ;;
    srs:*) return 1 ;;
    mediamtx:flv) return 1 ;;
    mediamtx:*) return 0 ;;
    loopback:flv) return 0 ;;
    loopback:*) return 1 ;;
    *) return 0 ;; # a streamhub build
  esac
}

# cell SERVER PROTO ROUND: one measurement on a fresh server.
cell() {
  local srv=$1 proto=$2 round=$3 n=${N[$2]}
  local dir="$OUT/$round-$proto-$srv"
  mkdir -p "$dir"
  local rtmp http rtsp srt webrtc
  read -r rtmp http rtsp srt webrtc < <(ports)
  local cmd=() ready=$rtmp
  case "$srv" in
    srs)
      cat > "$dir/srs.conf" <<CONF
listen $rtmp;
max_connections 4000;
daemon off;
pid $dir/srs.pid;
srs_log_tank console;
srs_log_level warn;
http_server { enabled on; listen $http; dir $dir; }
vhost __defaultVhost__ {
    http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }
    play { mw_latency ${SRS_MW:-350}; }
}
CONF
      cmd=("$PEERS_DIR/bin/srs" -c "$dir/srs.conf") ;;
    mediamtx)
      cat > "$dir/mediamtx.yml" <<YML
logLevel: warn
rtmpAddress: 127.0.0.1:$rtmp
rtspAddress: 127.0.0.1:$rtsp
rtspTransports: [tcp]
srtAddress: 127.0.0.1:$srt
hls: no
webrtc: no
moq: no
paths:
  all_others:
YML
      cmd=("$PEERS_DIR/bin/mediamtx" "$dir/mediamtx.yml") ;;
    loopback)
      cmd=("$OUT/loopback" -file "$src" -addr "127.0.0.1:$http" -duration 30s); ready=$http ;;
    *)
      cat > "$dir/streamhub.yml" <<YML
limits: {maxConnsPerAddress: 0}
log: {level: warn}
rtmp: {address: "127.0.0.1:$rtmp"}
http: {address: "127.0.0.1:$http"}
rtsp: {address: "127.0.0.1:$rtsp", transports: [tcp]}
srt: {address: "127.0.0.1:$srt"}
streams: {database: "$dir/streams.db"}
webrtc: {udpAddress: "127.0.0.1:$webrtc", tcpAddress: ""}
YML
      cmd=("${HUB[$srv]}" --config "$dir/streamhub.yml") ;;
  esac
  "${cmd[@]}" > "$dir/server.log" 2>&1 &
  local pid=$! pub=""
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$ready") 2>/dev/null && break
    sleep 0.05
  done
  if [ "$srv" != loopback ]; then
    ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$src" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/bench" > "$dir/publisher.log" 2>&1 &
    pub=$!
    sleep 5
  fi
  local url
  case "$proto" in
    flv) url="http://127.0.0.1:$http/live/bench.flv" ;;
    rtmp) url="rtmp://127.0.0.1:$rtmp/live/bench" ;;
    rtsp) url="rtsp://127.0.0.1:$rtsp/live/bench" ;;
    srt) url="srt://127.0.0.1:$srt/live/bench" ;;
  esac
  local load0 c0 c1 hwm load1
  load0=$(cut -d' ' -f1 /proc/loadavg)
  if ! c0=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null); then
    echo "matrix: $srv did not start for $proto, round $round (see $dir/server.log)" >&2
    [ -n "$pub" ] && { kill "$pub" 2>/dev/null; wait "$pub" 2>/dev/null; }
    return 1
  fi
  # The load tool's own CPU (user and system seconds) tells whether it, not
  # the server, was the limit.
  # Worked out before the readers start: a process started during their
  # ramp (python3 took ~30 ms of CPU) delays the first keyframes.
  local half
  half=$(awk -v t="${T%s}" 'BEGIN { print t / 2 }')
  { TIMEFORMAT='%U %S'; time "$OUT/flvload" -url "$url" -n "$n" -t "$T" -ramp "$RAMP" -json "$dir/flvload.json" > "$dir/flvload.txt" 2>&1 || true; } 2> "$dir/flvload.time" &
  local loadpid=$! cmid
  # The second half of the window, joins long done, is the steady state:
  # the write path alone.
  sleep "$half"
  cmid=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo "$c0")
  wait "$loadpid"
  c1=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo "$c0")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  load1=$(cut -d' ' -f1 /proc/loadavg)
  [ -n "$pub" ] && kill "$pub" 2>/dev/null
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  [ -n "$pub" ] && { wait "$pub" 2>/dev/null || true; }
  python3 - "$srv" "$proto" "$round" "$n" "${T%s}" "$c0" "$cmid" "$c1" "$(getconf CLK_TCK)" "$hwm" "$load0" "$load1" "$SRC_KBPS" "$dir/flvload.json" "$(cat "$dir/flvload.time")" <<'PY' | tee -a "$OUT/cells.jsonl"
import json, sys, os
srv, proto, rnd, n, t, c0, cmid, c1, tick, hwm, l0, l1, kbps, f, lt = sys.argv[1:]
lt = sum(float(x) for x in lt.split()[:2]) if lt.strip() else 0
n, t, tick, kbps = int(n), float(t), float(tick), float(kbps)
cpu = (float(c1) - float(c0)) / tick
steady = (float(c1) - float(cmid)) / tick
s = json.load(open(f)) if os.path.exists(f) else {}
print(json.dumps({"server": srv, "proto": proto, "round": int(rnd), "readers": n, "t_s": t,
    "cpu_s": round(cpu, 2), "cpu_us_per_reader_s": round(1e6 * cpu / (n * t), 1),
    "steady_cpu_us_per_reader_s": round(1e6 * steady / (n * t / 2), 1), "peak_rss_mb": round(int(hwm) / 1024, 1),
    "load1_before": float(l0), "load1_after": float(l1), "source_kbps": kbps, "loadtool_cpu_s": round(lt, 2),
    "delivered_ratio_median": round(s.get("per_reader_kbps_median", 0) / kbps, 3),
    "delivered_ratio_min": round(s.get("per_reader_kbps_min", 0) / kbps, 3), "flvload": s}))
PY
}

for round in $(seq "$ROUNDS"); do
  order=($SERVERS)
  # Alternate the order round by round, so that no server always runs first.
  if [ $((round % 2)) -eq 0 ]; then order=($(printf '%s\n' "${order[@]}" | tac)); fi
  for proto in $PROTOS; do
    for srv in "${order[@]}"; do
      supports "$srv" "$proto" || continue
      echo "matrix: round $round, $proto, $srv (${N[$proto]} readers)" >&2
      # A server that fails to start (a port taken in between) gets one
      # more try on other ports.
      cell "$srv" "$proto" "$round" > /dev/null || cell "$srv" "$proto" "$round" > /dev/null ||
        echo "matrix: cell $proto/$srv of round $round left out" >&2
    done
  done
done
python3 "$(dirname "$0")/table.py" "$OUT/cells.jsonl" "$OUT/table.md" "$OUT/table.json"
cat "$OUT/table.md"
