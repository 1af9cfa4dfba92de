#!/usr/bin/env bash
# The hot-standby takeover gap (docs/standby.md): an RTMP publisher killed
# with SIGKILL → an HTTP-FLV viewer gets the standby's first picture, as a
# median over TRIES takeovers (default 10) on one server, ffmpeg publishers.
#   bench/standby.sh [TRIES]
set -euo pipefail
cd "$(dirname "$0")/.."
tries=${1:-10}
go test -tags e2e -count=1 -run '^TestStandbyTakeoverGap$' -v ./e2e -standby.tries="$tries" 2>&1 |
	grep -E 'takeover gap|^(--- |ok|FAIL)'
