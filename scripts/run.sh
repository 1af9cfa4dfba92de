#!/usr/bin/env bash
# Runs the server from the source tree with the given flags
# (`scripts/run.sh`, `scripts/run.sh --config my.yml`). First, when needed,
# web/vendor.sh installs the web pages' player libraries (hls.js and
# mpegts.js from npm, versions locked in web/package-lock.json) into
# web/static/vendor, which the binary embeds. Needs Go and, the first time,
# node with npm.
set -euo pipefail
cd "$(dirname "$0")/.."
web/vendor.sh
exec go run . "$@"
