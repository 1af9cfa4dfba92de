#!/usr/bin/env bash
# vendor.sh installs the web pages' player libraries when they are missing
# from web/static/vendor or older than web/package-lock.json: `npm ci` in
# web/, whose postinstall (vendor.mjs) copies hls.min.js and mpegts.js
# there for the Go build to embed. scripts/run.sh and scripts/test.sh run
# it before building; --force reinstalls.
set -euo pipefail
cd "$(dirname "$0")"
need=0
[ "${1:-}" = "--force" ] && need=1
for f in static/vendor/hls.min.js static/vendor/mpegts.js; do
  if [ ! -f "$f" ] || [ package-lock.json -nt "$f" ]; then
    need=1
  fi
done
[ "$need" -eq 1 ] || exit 0
if ! command -v npm >/dev/null 2>&1; then
  echo "web/vendor.sh: npm not found: install node 20 or later with npm (the web pages' player libraries hls.js and mpegts.js come from npm)" >&2
  exit 1
fi
echo "web/vendor.sh: installing the player libraries of the web pages (npm ci in web/)" >&2
npm ci --no-audit --no-fund --loglevel=error
