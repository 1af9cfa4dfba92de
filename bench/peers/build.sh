#!/usr/bin/env bash
# Builds the peers of the lab, SRS 6 and mediamtx v1.20.1, from their
# source snapshots into a scratch folder OUTSIDE the repository. Nothing
# built here is committed or copied into the project.
#
#   bench/peers/build.sh [-srs SRC] [-mediamtx SRC] [-out DIR]
#
# SRC is either a source tree or a git directory (a bare repository or a
# clone's .git). From a git directory, the script exports SRS_REF (default
# 6.0release, the SRS 6 release branch) or MEDIAMTX_REF (default v1.20.1)
# with `git archive` into DIR and builds that; a source tree is built where
# it is. Get the sources with any of:
#
#   git clone --bare https://github.com/ossrs/srs            (or the session's `fetch github:ossrs/srs`)
#   git clone --bare https://github.com/bluenviron/mediamtx  (or `fetch github:bluenviron/mediamtx`)
#
# Environment instead of flags: SRS_SRC, MEDIAMTX_SRC, PEERS_DIR (default
# /work/scratch/peers). Either peer may be left out (-srs "" skips SRS).
#
# Results: DIR/bin/srs, DIR/bin/mediamtx, and DIR/versions.txt (the commit
# and version of each). SRS needs, on Debian: build-essential automake
# autoconf libtool tclsh cmake pkg-config libssl-dev unzip patch perl (the
# script installs the missing ones with apt-get when it runs as root).
# mediamtx needs Go and its modules (the module proxy, or a warm cache).
set -euo pipefail
SRS_SRC=${SRS_SRC-/work/.mirror/ossrs+srs/repo}
MEDIAMTX_SRC=${MEDIAMTX_SRC-/work/.mirror/bluenviron+mediamtx/repo}
OUT=${PEERS_DIR:-/work/scratch/peers}
SRS_REF=${SRS_REF:-6.0release}
MEDIAMTX_REF=${MEDIAMTX_REF:-v1.20.1}
while [ $# -gt 0 ]; do
  case "$1" in
    -srs) SRS_SRC=$2; shift 2 ;;
    -mediamtx) MEDIAMTX_SRC=$2; shift 2 ;;
    -out) OUT=$2; shift 2 ;;
    *) echo "usage: $0 [-srs SRC] [-mediamtx SRC] [-out DIR]" >&2; exit 2 ;;
  esac
done
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$OUT/bin"
OUT=$(cd "$OUT" && pwd)
case "$OUT/" in "$repo"/*) echo "peers: -out must be outside the repository ($repo)" >&2; exit 2 ;; esac
: > "$OUT/versions.txt.new"

is_git() { git --git-dir="$1" rev-parse --git-dir >/dev/null 2>&1; }

# export GITDIR REF DEST [SUBDIR]: the tree of REF, without the blobs the
# snapshot lacks (a snapshot may leave out its largest files: SRS's bundled
# OpenSSL tarball, which --use-sys-ssl does not need, and a sample video).
export_tree() {
  local g=$1 ref=$2 dest=$3 sub=${4:-.}
  local missing=()
  local tree
  tree=$(git --git-dir="$g" ls-tree -r "$ref" -- "$sub")
  while IFS= read -r path; do missing+=(":(exclude)$path"); done < <(
    awk '{print $3}' <<< "$tree" | git --git-dir="$g" cat-file --batch-check 2>/dev/null |
      awk '$2 == "missing" {print $1}' | while read -r obj; do
        awk -F'\t' -v o="$obj" 'index($1, o) {print $2}' <<< "$tree"
      done)
  [ ${#missing[@]} -gt 0 ] && echo "peers: the snapshot lacks ${missing[*]#:(exclude)}; left out" >&2
  rm -rf "$dest" && mkdir -p "$dest"
  git --git-dir="$g" archive "$ref" -- "$sub" "${missing[@]}" 2>/dev/null | tar -x -C "$dest"
}

if [ -n "$SRS_SRC" ]; then
  if is_git "$SRS_SRC"; then
    commit=$(git --git-dir="$SRS_SRC" rev-parse "$SRS_REF^{commit}")
    echo "peers: SRS $SRS_REF = $commit, exported to $OUT/srs"
    export_tree "$SRS_SRC" "$commit" "$OUT/srs" trunk
    trunk="$OUT/srs/trunk"
  else
    commit="source tree $SRS_SRC"
    trunk="$SRS_SRC"; [ -d "$trunk/trunk" ] && trunk="$trunk/trunk"
  fi
  need=()
  for p in build-essential automake autoconf libtool tclsh cmake pkg-config libssl-dev unzip patch perl; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get install -y "${need[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
    else
      echo "peers: SRS needs: apt-get install ${need[*]}" >&2; exit 1
    fi
  fi
  (cd "$trunk" &&
    ./configure --rtc=off --srt=off --gb28181=off --ffmpeg-fit=off --use-sys-ssl --sanitizer=off > "$OUT/srs-configure.log" 2>&1 &&
    make -j"$(nproc)" > "$OUT/srs-make.log" 2>&1) || { echo "peers: SRS build failed; see $OUT/srs-configure.log and $OUT/srs-make.log" >&2; exit 1; }
  cp "$trunk/objs/srs" "$OUT/bin/srs"
  v=$(grep -E 'define VERSION_(MAJOR|MINOR|REVISION)' "$trunk/src/core/srs_core_version6.hpp" | awk '{print $3}' | paste -sd.)
  echo "srs $v $commit (./configure --rtc=off --srt=off --gb28181=off --ffmpeg-fit=off --use-sys-ssl --sanitizer=off)" >> "$OUT/versions.txt.new"
fi

if [ -n "$MEDIAMTX_SRC" ]; then
  if is_git "$MEDIAMTX_SRC"; then
    commit=$(git --git-dir="$MEDIAMTX_SRC" rev-parse "$MEDIAMTX_REF^{commit}")
    echo "peers: mediamtx $MEDIAMTX_REF = $commit, exported to $OUT/mediamtx"
    export_tree "$MEDIAMTX_SRC" "$commit" "$OUT/mediamtx"
    src="$OUT/mediamtx"
  else
    commit="source tree $MEDIAMTX_SRC"; src="$MEDIAMTX_SRC"
  fi
  # `go generate` would write these two from git and the network: the
  # version string, and hls.js for mediamtx's own HLS page (not used here).
  [ -s "$src/internal/core/VERSION" ] || printf '%s' "$MEDIAMTX_REF" > "$src/internal/core/VERSION"
  [ -f "$src/internal/servers/hls/hls.min.js" ] || echo '/* hls.js not fetched: lab build */' > "$src/internal/servers/hls/hls.min.js"
  (cd "$src" && CGO_ENABLED=0 go build -o "$OUT/bin/mediamtx" . > "$OUT/mediamtx-build.log" 2>&1) ||
    { echo "peers: mediamtx build failed; see $OUT/mediamtx-build.log" >&2; exit 1; }
  echo "mediamtx $("$OUT/bin/mediamtx" --version) $commit" >> "$OUT/versions.txt.new"
fi
# Keep the line of a peer not rebuilt this time.
if [ -f "$OUT/versions.txt" ]; then
  while read -r name rest; do
    grep -q "^$name " "$OUT/versions.txt.new" || echo "$name $rest" >> "$OUT/versions.txt.new"
  done < "$OUT/versions.txt"
fi
mv "$OUT/versions.txt.new" "$OUT/versions.txt"
cat "$OUT/versions.txt"
