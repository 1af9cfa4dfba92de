#!/usr/bin/env bash
# /api/v1/recordings/get against cat: a server records an ffmpeg test
# publish (720p30, ~2.7 Mbit/s) for SECONDS, then the whole recording is
# fetched as one MP4 (and as fMP4) over HTTP and the same segment files are
# read with cat, each from a cold page cache when run as root (drop_caches)
# and again warm. Prints MB/s for each.
#
#   bench/record-get.sh [SECONDS]   (default 60)
#
# Needs ffmpeg, curl, jq. Not part of the test command.
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $srv $pub 2>/dev/null || true; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/streamhub" .
port_http=$((20000 + RANDOM % 10000)); port_rtmp=$((port_http + 1))
cat >"$work/c.yml" <<YML
rtmp: {address: "127.0.0.1:$port_rtmp"}
http: {address: "127.0.0.1:$port_http"}
rtsp: {address: ""}
srt: {address: ""}
streams: {database: "$work/streams.db"}
paths: {default: {record: true}}
record: {directory: "$work/rec", segmentDuration: 10s}
YML
"$work/streamhub" --config "$work/c.yml" 2>"$work/log" & srv=$!
sleep 1
ffmpeg -hide_banner -nostdin -v error -re -f lavfi -i testsrc=size=1280x720:rate=30 -re -f lavfi -i sine=sample_rate=44100 \
  -c:v libx264 -preset ultrafast -b:v 2600k -minrate 2600k -maxrate 2600k -bufsize 1300k -x264-params nal-hrd=cbr -g 60 -pix_fmt yuv420p -c:a aac -b:a 96k \
  -t "$secs" -f flv "rtmp://127.0.0.1:$port_rtmp/live/bench" & pub=$!
wait $pub || true
sleep 2
base="http://127.0.0.1:$port_http"
span=$(curl -fsS "$base/api/v1/recordings?path=live/bench" | jq -r '.spans[0].url')
bytes_files=$(find "$work/rec" -name '*.mp4' -printf '%s\n' | awk '{s+=$1} END {print s}')
drop() { if [ "$(id -u)" = 0 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f MB/s", b/t/1e6}'; }
for cache in cold warm; do
  [ $cache = cold ] && drop
  t0=$(date +%s.%N); find "$work/rec" -name '*.mp4' -print0 | sort -z | xargs -0 cat >/dev/null; t1=$(date +%s.%N)
  echo "cat ($cache): $bytes_files bytes, $(rate "$bytes_files" "$(echo "$t1 - $t0" | bc)")"
  for fmt in mp4 fmp4; do
    [ $cache = cold ] && drop
    u="$base${span/format=mp4/format=$fmt}"
    out=$(curl -fsS -o /dev/null -w '%{size_download} %{time_total}' "$u")
    echo "/get $fmt ($cache): ${out% *} bytes, $(rate ${out% *} ${out#* })"
  done
done
