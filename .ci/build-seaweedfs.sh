#!/usr/bin/env bash
# Builds the pinned SeaweedFS (`weed`, Apache-2.0), the S3-compatible store the recording tests run against, into the
# same cache as livekit-server (outside the repo). Rebuilds only when the cached binary is not the pinned version.
#   .ci/build-seaweedfs.sh
# `go install module@version` refuses SeaweedFS (its go.mod has replace directives), so the module's source is taken
# from the Go module proxy (`go mod download`) and built as the main module, in a temporary copy. The binary's main
# module then shows as "(devel)" in `go version -m`, so the cache check is a stamp file next to it:
# "<version> <sha256 of the binary>".
set -euo pipefail
WEED_VER="${VOXARENA_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
MOD=github.com/seaweedfs/seaweedfs
BIN="${VOXARENA_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/voxarena/bin}"
OUT="$BIN/weed"
STAMP="$BIN/weed.stamp"
mkdir -p "$BIN"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
command -v go >/dev/null || { echo "build-seaweedfs: Go is not installed (need Go >= 1.26 to build SeaweedFS)" >&2; exit 2; }
if [ -x "$OUT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WEED_VER $(sha256sum "$OUT" | cut -d' ' -f1)" ]; then
  echo "build-seaweedfs: weed $WEED_VER cached at $BIN"
  exit 0
fi
echo "build-seaweedfs: building weed $WEED_VER from the Go module proxy (first build takes 10-20 minutes on 2 cores)"
start=$(date +%s)
src="$(go mod download -json "$MOD@$WEED_VER" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$src" ] && [ -f "$src/go.mod" ] || { echo "build-seaweedfs: the module proxy did not serve $MOD@$WEED_VER" >&2; exit 2; }
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
(cd "$work/src" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags='-s -w' -o "$work/weed" ./weed)
"$work/weed" version >/dev/null || { echo "build-seaweedfs: the built weed does not run" >&2; exit 2; }
mv -f "$work/weed" "$OUT"
echo "$WEED_VER $(sha256sum "$OUT" | cut -d' ' -f1)" > "$STAMP"
echo "build-seaweedfs: weed built in $(( $(date +%s) - start ))s ($("$OUT" version 2>&1 | head -1))"
