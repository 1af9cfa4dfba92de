#!/usr/bin/env bash
# Origin egress of a cluster (docs/cluster.md): one origin, two edges that
# pull from it through the live map in a redis-server of this run, and N
# HTTP-FLV viewers (bench/flvload) on each edge. However many viewers the
# edges have, the origin should send each stream about once per edge: the
# figure is the origin's bytes written to its readers (the two relays) per
# byte its publisher sent, over a window of T once every viewer plays
# (streamhub_stream_bytes_out_total / streamhub_stream_bytes_in_total of
# the path: about 2 plus FLV/RTMP framing). The edges' own egress (their
# viewers') is shown beside it. Then, in the same run, one standalone node
# (no cluster section) with the same source and N viewers: an edge's CPU
# per viewer-second against a single node's.
#
#   bench/cluster.sh [-n 500] [-t 15s]
#
# Needs redis-server, ffmpeg, curl and python3. Results: bench/out/cluster.md
# and bench/out/cluster-edge{1,2}.txt (flvload's summaries). Not part of the
# test command.
set -euo pipefail
cd "$(dirname "$0")/.."
N=500 T=15s
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    *) echo "usage: $0 [-n 500] [-t 15s]" >&2; exit 2 ;;
  esac
done
for tool in redis-server ffmpeg curl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is needed (apt-get install redis-server ffmpeg curl python3)" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n 8192
secs=${T%s}
out=bench/out
work="$out/cluster"
rm -rf "$work"; mkdir -p "$work"
src="$out/src-360p30.flv" DESC="360p30 ~0.5 Mbit/s"
[ -f "$src" ] || ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t 30 \
  -c:v libx264 -preset veryfast -b:v 450k -maxrate 500k -bufsize 500k -g 60 -keyint_min 60 -sc_threshold 0 \
  -c:a aac -b:a 64k -f flv "$src"
CGO_ENABLED=0 go build -o "$out/streamhub" .
go build -o "$out/flvload" ./bench/flvload

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS=127.0.0.1:$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
redis-server --bind 127.0.0.1 --port "${REDIS#*:}" --dir "$work" --save "" --appendonly no --daemonize no \
  > "$work/redis.log" 2>&1 &
PIDS+=("$!")

# node NAME ROLE: writes NAME.yml and starts the node; sets HTTP_NAME, RTMP_NAME.
node() {
  local name=$1 role=$2 rtmp http
  rtmp=$(free_port) http=$(free_port)
  local cl=""
  [ "$role" = standalone ] || cl="cluster: {role: $role, node: $name, redis: \"$REDIS\", relayAddress: \"127.0.0.1:$rtmp\", secret: bench-cluster-secret-0123456789, allowedRelays: [127.0.0.0/8]}"
  cat > "$work/$name.yml" <<YML
log: {level: warn}
limits: {maxConnsPerAddress: 0}
rtmp: {address: "127.0.0.1:$rtmp"}
http: {address: "127.0.0.1:$http"}
rtsp: {address: ""}
srt: {address: ""}
webrtc: {enabled: false}
streams: {database: "$work/$name.db"}
paths: {default: {transcode: "off", gracePeriod: 10s}}
$cl
YML
  "$out/streamhub" --config "$work/$name.yml" > "$work/$name.log" 2>&1 &
  PIDS+=("$!")
  eval "HTTP_$name=127.0.0.1:$http RTMP_$name=127.0.0.1:$rtmp PID_$name=$!"
}
node origin origin
node edge1 edge
node edge2 edge
sleep 1
publish() { # publish RTMP_ADDRESS LOG: the looped source to live/bench, then a settling pause
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$src" -c copy -f flv "rtmp://$1/live/bench" > "$2" 2>&1 &
  PIDS+=("$!")
  sleep 4
}
publish "$RTMP_origin" "$work/publisher.log"

metric() { # metric HOST NAME: the value for path live/bench
  curl -s "http://$1/metrics" | awk -v n="$2" '$1 == n"{path=\"live/bench\"}" {print $2}'
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

echo "--- $N HTTP-FLV viewers on each of two edges, $T"
"$out/flvload" -url "http://$HTTP_edge1/live/bench.flv" -n "$N" -t "$((secs + 8))s" > "$out/cluster-edge1.txt" &
L1=$!; PIDS+=("$L1")
"$out/flvload" -url "http://$HTTP_edge2/live/bench.flv" -n "$N" -t "$((secs + 8))s" > "$out/cluster-edge2.txt" &
L2=$!; PIDS+=("$L2")
sleep 4 # every viewer joined, the edges' pulls run
in0=$(metric "$HTTP_origin" streamhub_stream_bytes_in_total)
out0=$(metric "$HTTP_origin" streamhub_stream_bytes_out_total)
e10=$(metric "$HTTP_edge1" streamhub_stream_bytes_out_total); e20=$(metric "$HTTP_edge2" streamhub_stream_bytes_out_total)
c0=$(ticks "$PID_origin"); d10=$(ticks "$PID_edge1"); d20=$(ticks "$PID_edge2")
t0=$(date +%s.%N)
sleep "$secs"
in1=$(metric "$HTTP_origin" streamhub_stream_bytes_in_total)
out1=$(metric "$HTTP_origin" streamhub_stream_bytes_out_total)
e11=$(metric "$HTTP_edge1" streamhub_stream_bytes_out_total); e21=$(metric "$HTTP_edge2" streamhub_stream_bytes_out_total)
c1=$(ticks "$PID_origin"); d11=$(ticks "$PID_edge1"); d21=$(ticks "$PID_edge2")
t1=$(date +%s.%N)
relays=$(curl -s "http://$HTTP_origin/api/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("relays",{}).get("live/bench",0))')
wait "$L1" "$L2" || true

python3 - "$N" "$DESC" "$(getconf CLK_TCK)" "$t0" "$t1" "$in0" "$in1" "$out0" "$out1" "$e10" "$e11" "$e20" "$e21" \
  "$c0" "$c1" "$d10" "$d11" "$d20" "$d21" "$relays" <<'PY' | tee "$out/cluster.md"
import sys
a = sys.argv[1:]
n, desc, tick = int(a[0]), a[1], float(a[2])
t0, t1, in0, in1, o0, o1, e10, e11, e20, e21, c0, c1, d10, d11, d20, d21 = map(float, a[3:19])
relays = a[19]
secs = t1 - t0
open("bench/out/cluster.secs", "w").write(f"{secs}\n")
rate_in = (in1 - in0) * 8 / secs / 1e6
print(f"| source | viewers | window | stream in | origin out | ratio | relays | edge-1 out | edge-2 out | CPU origin / edge-1 / edge-2 |")
print(f"|---|---|---|---|---|---|---|---|---|---|")
print(f"| {desc} | 2 x {n} HTTP-FLV | {secs:.1f} s | {rate_in:.2f} Mbit/s | {(o1-o0)*8/secs/1e6:.2f} Mbit/s | "
      f"**{(o1-o0)/max(in1-in0,1):.2f}** | {relays} | {(e11-e10)*8/secs/1e6:.1f} Mbit/s | {(e21-e20)*8/secs/1e6:.1f} Mbit/s | "
      f"{(c1-c0)/tick/secs:.2f} / {(d11-d10)/tick/secs:.2f} / {(d21-d20)/tick/secs:.2f} s/s |")
PY
grep -E "connected|errors" "$out/cluster-edge1.txt" "$out/cluster-edge2.txt" | head -6 || true

# The same viewers on one standalone node, after the cluster's run.
for p in "$PID_origin" "$PID_edge1" "$PID_edge2"; do kill "$p" 2>/dev/null || true; done
node single standalone
sleep 1
publish "$RTMP_single" "$work/publisher-single.log"
"$out/flvload" -url "http://$HTTP_single/live/bench.flv" -n "$N" -t "$((secs + 8))s" > "$out/cluster-single.txt" &
L3=$!; PIDS+=("$L3")
sleep 4
s0=$(ticks "$PID_single"); t0=$(date +%s.%N)
sleep "$secs"
s1=$(ticks "$PID_single"); t1=$(date +%s.%N)
wait "$L3" || true
python3 - "$N" "$(getconf CLK_TCK)" "$t0" "$t1" "$s0" "$s1" "$d10" "$d11" "$d20" "$d21" "$(cat "$out/cluster.secs")" <<'PY' | tee -a "$out/cluster.md"
import sys
a = sys.argv[1:]
n, tick = int(a[0]), float(a[1])
t0, t1, s0, s1, d10, d11, d20, d21, csecs = map(float, a[2:11])
single = (s1 - s0) / tick / (t1 - t0) / n * 1e6
edges = [(d11 - d10) / tick / csecs / n * 1e6, (d21 - d20) / tick / csecs / n * 1e6]
print()
print("| CPU per viewer-second | edge-1 | edge-2 | single node | edges / single |")
print("|---|---|---|---|---|")
print(f"| {n} HTTP-FLV viewers | {edges[0]:.0f} µs | {edges[1]:.0f} µs | {single:.0f} µs | {sum(edges)/2/single:.2f} |")
PY
grep -E "connected|errors" "$out/cluster-single.txt" | head -2 || true
