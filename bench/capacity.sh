#!/usr/bin/env bash
# Capacity: the largest number of HTTP-FLV readers one machine serves a
# 0.5 Mbit/s stream to with every reader at >= 99 % of the live rate. For
# each N of the curve: a fresh server, one ffmpeg -c copy publisher (over
# RTMP), N bench/flvload readers ramped in over N/500 s, 20 s of reading;
# then the slowest reader's rate against the stream's, the server's CPU
# and peak RSS, and the load tool's own CPU (it runs on the same machine).
#
# A reader's rate is measured two ways. "Media": the media time of the
# pictures it received per second of wall time, from its first keyframe
# to its end (1.00 for a reader that kept up; the live rate is one second
# of media per second). "Bytes": its bytes over its 20 s against the
# file's average bit rate, which also moves with the part of the looped
# file its window covered and with where in a GOP it joined.
#
#   bench/capacity.sh [-server streamhub|srs|loopback] [-steps "1000 2000 4000 6000 8000 10000"] [-t 20s]
#
# -server srs runs SRS (SRS_BIN: the objs/srs binary of a build made
# outside the repository, see bench/peers), with HTTP-FLV remux and its
# GOP cache on; loopback is bench/loopback's one-sender floor. Results:
# bench/out/capacity-SERVER.txt (a table) and .json (one line per step).
# Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=streamhub STEPS="1000 2000 4000 6000 8000 10000" T=20s
while [ $# -gt 0 ]; do
  case "$1" in
    -server) SERVER=$2; shift 2 ;;
    -steps) STEPS=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    *) echo "usage: $0 [-server streamhub|srs|loopback] [-steps \"N ...\"] [-t 20s]" >&2; exit 2 ;;
  esac
done
command -v ffmpeg >/dev/null || { echo "capacity: ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
if [ "$SERVER" = srs ] && [ ! -x "${SRS_BIN:-}" ]; then echo "capacity: set SRS_BIN to a built SRS (objs/srs)" >&2; exit 1; fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
out=bench/out
mkdir -p "$out"
src="$out/src-360p-500k.flv"
if [ ! -f "$src" ]; then
  # 640x360 30 fps, x264 at ~430 kbit/s + AAC 64 kbit/s, 1 s GOP, no B-frames: ~0.5 Mbit/s.
  ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=size=640x360:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
    -t 30 -c:v libx264 -preset veryfast -b:v 430k -maxrate 430k -bufsize 430k -g 30 -bf 0 -pix_fmt yuv420p \
    -c:a aac -b:a 64k -f flv "$src"
fi
rate_kbps=$(python3 -c "import os,sys; print(round(os.path.getsize('$src')*8/1000/30, 1))")
CGO_ENABLED=0 go build -o "$out/streamhub" .
go build -o "$out/flvload" ./bench/flvload
go build -o "$out/loopback" ./bench/loopback
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TICK=$(getconf CLK_TCK)
: > "$out/capacity-$SERVER.json"
printf '| readers | slowest reader, media time per second | readers under 0.99 | slowest reader, bytes / file rate | readers connected | server CPU (cores) | server peak RSS | flvload CPU (cores) |\n|---|---|---|---|---|---|---|---|\n' > "$out/capacity-$SERVER.txt"
for n in $STEPS; do
  R=$(free_port) H=$(free_port) PUB=""
  dir=$(mktemp -d)
  case "$SERVER" in
    streamhub)
      printf 'limits: {maxConnsPerAddress: 0}\nlog: {level: warn}\nrtmp: {address: "127.0.0.1:%s"}\nhttp: {address: "127.0.0.1:%s"}\nrtsp: {address: "127.0.0.1:%s", transports: [tcp]}\nsrt: {address: "127.0.0.1:%s"}\nwebrtc: {udpAddress: "127.0.0.1:0", tcpAddress: ""}\nstreams: {database: "%s/streams.db"}\n' "$R" "$H" "$(free_port)" "$(free_port)" "$dir" > "$dir/conf.yml"
      "$out/streamhub" --config "$dir/conf.yml" > "$dir/server.log" 2>&1 & SRV=$! ;;
    srs)
      # SRS refuses max_connections + 128 above the open-files limit.
      printf 'listen %s;\nmax_connections %s;\ndaemon off;\npid %s/srs.pid;\nsrs_log_tank console;\nsrs_log_level warn;\nhttp_server { enabled on; listen %s; }\nvhost __defaultVhost__ { http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }\n' "$R" "$(( $(ulimit -n) - 200 ))" "$dir" "$H" > "$dir/srs.conf"
      (cd "$dir" && exec "$SRS_BIN" -c "$dir/srs.conf") > "$dir/server.log" 2>&1 & SRV=$! ;;
    loopback)
      "$out/loopback" -file "$src" -addr "127.0.0.1:$H" -duration 30s > "$dir/server.log" 2>&1 & SRV=$! ;;
    *) echo "capacity: -server is streamhub, srs or loopback" >&2; exit 2 ;;
  esac
  sleep 1
  if [ "$SERVER" != loopback ]; then
    ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$src" -c copy -f flv "rtmp://127.0.0.1:$R/live/cap" > "$dir/publisher.log" 2>&1 & PUB=$!
    sleep 4
  fi
  c0=$(awk '{print $14+$15}' "/proc/$SRV/stat")
  ramp=$(( (n + 499) / 500 ))s
  /usr/bin/time -f "%U %S" -o "$dir/tool.time" "$out/flvload" -url "http://127.0.0.1:$H/live/cap.flv" -n "$n" -t "$T" -ramp "$ramp" -json "$dir/load.json" > "$dir/load.txt" 2>&1 || true
  c1=$(awk '{print $14+$15}' "/proc/$SRV/stat")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SRV/status")
  [ -n "$PUB" ] && kill "$PUB" 2>/dev/null
  kill "$SRV" 2>/dev/null; wait 2>/dev/null || true
  python3 - "$n" "${T%s}" "$ramp" "$c0" "$c1" "$TICK" "$hwm" "$rate_kbps" "$dir/load.json" "$dir/tool.time" "$SERVER" <<'PY' | tee -a "$out/capacity-$SERVER.json"
import json, sys
n, t, ramp, c0, c1, tick, hwm, rate, lj, tt, server = sys.argv[1:]
n, t, tick, rate = int(n), float(t), float(tick), float(rate)
w = json.load(open(lj))
u, s = map(float, open(tt).read().split()[-2:])
wall = t + float(ramp.rstrip('s'))
print(json.dumps({"server": server, "readers": n, "connected": w["connected"], "errors": w["errors"],
  "slowest_over_live": round(w["per_reader_kbps_min"] / rate, 3), "median_over_live": round(w["per_reader_kbps_median"] / rate, 3),
  "slowest_media_rate": round(w.get("media_rate_min", 0), 3), "median_media_rate": round(w.get("media_rate_median", 0), 3),
  "under_0_99": w.get("media_rate_below_0_99", 0),
  "server_cores": round((float(c1) - float(c0)) / tick / wall, 2), "server_rss_mb": round(int(hwm) / 1024, 1),
  "tool_cores": round((u + s) / wall, 2), "live_kbps": rate}))
PY
  python3 - "$out/capacity-$SERVER.json" >> "$out/capacity-$SERVER.txt" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"| {d['readers']} | {d['slowest_media_rate']:.3f} | {d['under_0_99']} | {d['slowest_over_live']:.3f} | {d['connected']} | {d['server_cores']} | {d['server_rss_mb']} MB | {d['tool_cores']} |")
PY
  rm -rf "$dir"
done
cat "$out/capacity-$SERVER.txt"
