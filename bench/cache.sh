#!/usr/bin/env bash
# LL-HLS through a cache tier: N bench/hlsload clients (a blocking reload
# and the preload-hinted part for every part, as hls.js does) play the same
# stream directly from streamhub, through Varnish and through nginx (the
# recipes of deploy/, proxy_cache_lock on and off), one after the other in
# one run against one server and one publisher, for each N.
#
#   bench/cache.sh [-n "50 500"] [-t 15s] [-targets "direct varnish nginx nginx-nolock"] [-light]
#
# -light publishes a 640x360 ~0.5 Mbit/s source instead of the 720p30
# ~2.7 Mbit/s one: the same parts a second, a fifth of the bytes, so that
# 500 clients and the caches on one small machine measure the caches more
# than the loopback copies.
#
# Per target and N it reports, from the origin's /metrics
# (streamhub_hls_responses_total) and /proc:
# - origin requests per part made: parts (and preload-hinted parts), and
#   blocking playlists per playlist version (one version per part; the
#   source is 30 fps with 6-frame parts: 5 parts a second of wall time);
# - the clients' median part delivery lag (hlsload: from the part's
#   availability, PROGRAM-DATE-TIME plus the parts before it, to received)
#   and the added delay against direct at the same N;
# - errors (hlsload's), the origin's CPU seconds per second (the streamhub
#   process; the ladder is off) and the cache's (its processes).
#
# VARNISH_PARAMS adds varnishd parameters ("-p thread_pool_min=600").
# Needs varnishd and nginx (apt-get install varnish nginx; scripts/test.sh
# installs them) and ffmpeg. Results: bench/out/cache.md (the table) and
# bench/out/cache-TARGET-N.{json,txt}. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
NS="50 500" T=15s TARGETS="direct varnish nginx nginx-nolock" LIGHT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) NS=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    -targets) TARGETS=$2; shift 2 ;;
    -light) LIGHT=1; shift ;;
    *) echo "usage: $0 [-n \"50 500\"] [-t 15s] [-targets \"direct varnish nginx nginx-nolock\"] [-light]" >&2; exit 2 ;;
  esac
done
PATH="$PATH:/usr/sbin"
for tool in ffmpeg varnishd nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is needed (apt-get install ffmpeg varnish nginx python3 curl)" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n 8192
out=bench/out
work="$out/cache"
rm -rf "$work"; mkdir -p "$work"

src="$out/src-720p30.flv" DESC="720p30 ~2.7 Mbit/s"
if [ -n "$LIGHT" ]; then
  src="$out/src-360p30.flv" DESC="360p30 ~0.5 Mbit/s"
  [ -f "$src" ] || ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 30 \
    -c:v libx264 -preset veryfast -b:v 450k -maxrate 500k -bufsize 500k -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 64k -f flv "$src"
fi
if [ ! -f "$src" ]; then
  echo "bench: encoding the 720p30 test source once ($src)"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 30 \
    -c:v libx264 -preset veryfast -b:v 2550k -maxrate 2600k -bufsize 2600k -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 128k -f flv "$src"
fi
CGO_ENABLED=0 go build -o "$out/streamhub" .
go build -o "$out/hlsload" ./bench/hlsload

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RTMP_PORT=$(free_port) HTTP_PORT=$(free_port) RTSP_PORT=$(free_port)
ORIGIN="127.0.0.1:$HTTP_PORT"
cat > "$work/streamhub.yml" <<YML
log: {level: warn}
limits: {maxConnsPerAddress: 0}
rtmp: {address: "127.0.0.1:$RTMP_PORT"}
http: {address: "$ORIGIN"}
rtsp: {address: "127.0.0.1:$RTSP_PORT", transports: [tcp]}
srt: {address: ""}
webrtc: {enabled: false}
streams: {database: "$work/streams.db"}
paths: {default: {transcode: "off"}}
YML

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$out/streamhub" --config "$work/streamhub.yml" > "$work/server.log" 2>&1 &
SRV=$!; PIDS+=("$SRV")
sleep 0.5
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$src" -c copy -f flv "rtmp://127.0.0.1:$RTMP_PORT/live/bench" > "$work/publisher.log" 2>&1 &
PIDS+=("$!")
sleep 5

declare -A ADDR ROOT
ADDR[direct]=$ORIGIN ROOT[direct]=""
for target in $TARGETS; do
  case "$target" in
    direct) ;;
    varnish)
      port=$(free_port) d="$PWD/$work/varnish"; mkdir -p "$d"
      sed -e "s/\.host = \"127.0.0.1\";/.host = \"127.0.0.1\";/" -e "s/\.port = \"8080\";/.port = \"$HTTP_PORT\";/" \
        deploy/varnish/streamhub.vcl > "$d/streamhub.vcl"
      # shellcheck disable=SC2086 # VARNISH_PARAMS: extra "-p name=value" words
      varnishd -F -j none -T none -n "$d/work" -a "127.0.0.1:$port" -f "$d/streamhub.vcl" -s malloc,512m \
        ${VARNISH_PARAMS:-} > "$d/varnishd.log" 2>&1 &
      ROOT[$target]=$! ADDR[$target]="127.0.0.1:$port"; PIDS+=("$!") ;;
    nginx|nginx-nolock)
      port=$(free_port) d="$PWD/$work/$target"; mkdir -p "$d/cache"
      lock=on; [ "$target" = nginx-nolock ] && lock=off
      sed -e "s/server 127.0.0.1:8080;/server $ORIGIN;/" -e "s/listen 80;/listen 127.0.0.1:$port;/" \
        -e "s#/var/cache/nginx/streamhub#$d/cache#" -e "s/proxy_cache_lock on;/proxy_cache_lock $lock;/" \
        deploy/nginx/streamhub.conf > "$d/streamhub.conf"
      user=""; [ "$(id -u)" -eq 0 ] && user="user root;"
      cat > "$d/nginx.conf" <<NGX
daemon off;
$user
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    include $d/streamhub.conf;
}
NGX
      nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" &
      ROOT[$target]=$! ADDR[$target]="127.0.0.1:$port"; PIDS+=("$!") ;;
    *) echo "bench: unknown target $target (direct, varnish, nginx, nginx-nolock)" >&2; exit 2 ;;
  esac
done
sleep 2
# Warm the muxer up (the first request starts it).
curl -s -o /dev/null "http://$ORIGIN/live/bench/stream.m3u8"
sleep 3

# cputicks PID: utime+stime of PID and every descendant.
cputicks() {
  python3 - "$1" <<'PY'
import os, sys
root = sys.argv[1]
procs = {}
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            st = open(f'/proc/{p}/stat').read()
        except OSError:
            continue
        f = st[st.rindex(')') + 2:].split()
        procs[p] = (f[1], int(f[11]) + int(f[12]))
tot, todo = 0, [root]
while todo:
    p = todo.pop()
    if p in procs:
        tot += procs[p][1]
    todo += [c for c, (pp, _) in procs.items() if pp == p]
print(tot)
PY
}
selfticks() { awk '{print $14+$15}' "/proc/$SRV/stat"; }
metrics() { curl -s "http://$ORIGIN/metrics" | grep '^streamhub_hls_responses_total' | sed 's/.*kind="\([a-z_]*\)"} /\1 /'; }

# direct first: the reference for the added delay.
RUNS="direct $(printf '%s\n' $TARGETS | grep -vx direct | tr '\n' ' ')"
rows="$work/rows.txt"; : > "$rows"
for n in $NS; do
  for target in $RUNS; do
    echo "--- $target, $n clients"
    m0=$(metrics); s0=$(selfticks); c0=0; [ -n "${ROOT[$target]}" ] && c0=$(cputicks "${ROOT[$target]}")
    t0=$(date +%s.%N)
    "$out/hlsload" -url "http://${ADDR[$target]}/live/bench/index.m3u8" -n "$n" -t "$T" -preload \
      -json "$out/cache-$target-$n.json" > "$out/cache-$target-$n.txt"
    t1=$(date +%s.%N)
    m1=$(metrics); s1=$(selfticks); c1=0; [ -n "${ROOT[$target]}" ] && c1=$(cputicks "${ROOT[$target]}")
    grep -E "errors|part delivery lag|parts  " "$out/cache-$target-$n.txt" || true
    printf '%s\n' "$target $n $t0 $t1 $s0 $s1 $c0 $c1 $(echo "$m0" | tr '\n' ' ' | tr ' ' ',') $(echo "$m1" | tr '\n' ' ' | tr ' ' ',')" >> "$rows"
    sleep 3
  done
done

python3 - "$rows" "$out" "$(getconf CLK_TCK)" "$T" "$DESC" <<'PY' | tee "$out/cache.md"
import json, sys
rows, out, tick, T, desc = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
def kv(s):
    it = [x for x in s.split(',') if x]
    return {it[i]: float(it[i + 1]) for i in range(0, len(it) - 1, 2)}
res = []
for line in open(rows):
    target, n, t0, t1, s0, s1, c0, c1, m0, m1 = line.split()
    t0, t1 = float(t0), float(t1)
    m0, m1 = kv(m0), kv(m1)
    d = lambda k: m1.get(k, 0) - m0.get(k, 0)
    made = (t1 - t0) * 5  # 30 fps, 6-frame parts
    j = json.load(open(f"{out}/cache-{target}-{n}.json"))
    res.append(dict(target=target, n=int(n), secs=t1 - t0, made=made, parts=d('part'), blocking=d('playlist_blocking'),
                    other=d('playlist') + d('multivariant') + d('init') + d('segment'), errs_origin=d('error'),
                    errors=j['errors'], kinds=j.get('error_kinds') or {}, started=j['started'], lag=j['part_lag_ms_median'],
                    lag95=j['part_lag_ms_p95'], got=j['parts'], pps=j['parts_per_client_s'],
                    cpu=(float(s1) - float(s0)) / tick / (t1 - t0), ccpu=(float(c1) - float(c0)) / tick / (t1 - t0)))
direct = {r['n']: r['lag'] for r in res if r['target'] == 'direct'}
print(f"hlsload -preload, -t {T}, {desc}, hls.partTarget 200 ms (5 parts/s made)\n")
print("| target | clients | started | errors | origin parts / part made | origin blocking playlists / version | other origin requests | part lag median (p95) | added vs direct | origin CPU (s/s) | cache CPU (s/s) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in res:
    add = r['lag'] - direct[r['n']] if r['n'] in direct else float('nan')
    errs = str(r['errors']) + (" (" + ", ".join(f"{v} {k}" for k, v in sorted(r['kinds'].items())) + ")" if r['kinds'] else "")
    print(f"| {r['target']} | {r['n']} | {r['started']} | {errs} | {r['parts'] / r['made']:.2f} | {r['blocking'] / r['made']:.2f} | {r['other']:.0f} | "
          f"{r['lag']:.0f} ms ({r['lag95']:.0f}) | {add:+.0f} ms | {r['cpu']:.3f} | {r['ccpu']:.3f} |")
PY
