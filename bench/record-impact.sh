#!/usr/bin/env bash
# The recorder's cost, in one run: the server's CPU per HTTP-FLV
# reader-second on a viewed stream, with no recording and then with 10
# other 2.7 Mbit/s streams recorded (each also a publisher: the recorded
# streams' ingest counts in both runs), and the recorder's CPU per
# recorded stream (the difference over the 10 recorded streams against
# the same 10 streams not recorded).
#
#   bench/record-impact.sh [-n READERS] [-t 20s]
#
# Needs ffmpeg. Results on stdout and bench/out/record-impact.txt. Not
# part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
N=50 T=20s
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    *) echo "usage: $0 [-n READERS] [-t 20s]" >&2; exit 2 ;;
  esac
done
out=bench/out
mkdir -p "$out"
src="$out/src-720p-2700k.flv"
if [ ! -f "$src" ]; then
  ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
    -t 30 -c:v libx264 -preset veryfast -b:v 2600k -minrate 2600k -maxrate 2600k -bufsize 2600k -x264-params nal-hrd=cbr \
    -g 60 -bf 0 -pix_fmt yuv420p -c:a aac -b:a 96k -f flv "$src"
fi
CGO_ENABLED=0 go build -o "$out/streamhub" .
go build -o "$out/flvload" ./bench/flvload
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TICK=$(getconf CLK_TCK)
secs=${T%s}
: > "$out/record-impact.txt"
for mode in off on; do
  R=$(free_port) H=$(free_port)
  dir=$(mktemp -d)
  rec=false
  [ $mode = on ] && rec=true
  printf 'log: {level: warn}\nrtmp: {address: "127.0.0.1:%s"}\nhttp: {address: "127.0.0.1:%s"}\nrtsp: {address: ""}\nsrt: {address: ""}\nstreams: {database: "%s/streams.db"}\nrecord: {directory: "%s/rec"}\npaths:\n  overrides:\n    - match: "rec/*"\n      record: %s\n' \
    "$R" "$H" "$dir" "$dir" "$rec" > "$dir/conf.yml"
  "$out/streamhub" --config "$dir/conf.yml" > "$dir/server.log" 2>&1 & SRV=$!
  sleep 1
  pubs=()
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$src" -c copy -f flv "rtmp://127.0.0.1:$R/live/view" > /dev/null 2>&1 & pubs+=($!)
  for i in $(seq 0 9); do
    ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$src" -c copy -f flv "rtmp://127.0.0.1:$R/rec/s$i" > /dev/null 2>&1 & pubs+=($!)
  done
  sleep 4
  c0=$(awk '{print $14+$15}' "/proc/$SRV/stat")
  "$out/flvload" -url "http://127.0.0.1:$H/live/view.flv" -n "$N" -t "$T" > "$dir/load.txt" 2>&1 || true
  c1=$(awk '{print $14+$15}' "/proc/$SRV/stat")
  kill "${pubs[@]}" 2>/dev/null || true
  kill "$SRV" 2>/dev/null; wait 2>/dev/null || true
  recbytes=$({ du -sb "$dir/rec" 2>/dev/null || echo 0; } | cut -f1)
  python3 - "$mode" "$N" "$secs" "$c0" "$c1" "$TICK" "${recbytes:-0}" <<'PY' | tee -a "$out/record-impact.txt"
import sys
mode, n, t, c0, c1, tick, rb = sys.argv[1:]
cores = (float(c1) - float(c0)) / float(tick) / float(t)
print(f"record {mode}: server {cores:.3f} cores with {n} FLV readers + 11 publishers; "
      f"{cores / (int(n) * float(t)) * 1e6:.1f} µs CPU per reader-second (all of the server's CPU over the readers); recorded {int(rb)/1e6:.1f} MB")
PY
  rm -rf "$dir"
done
