#!/usr/bin/env bash
# Builds the pinned livekit-server and livekit-sip from the Go module proxy into a cache outside the repo.
# Rebuilds only when the cached binary's embedded module version differs from the pin.
set -euo pipefail
LK_VER="${VOXARENA_LIVEKIT_SERVER_VERSION:-v1.13.5}"
SIP_VER="${VOXARENA_LIVEKIT_SIP_VERSION:-v1.11.0}"
BIN="${VOXARENA_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/voxarena/bin}"
mkdir -p "$BIN"
export GOBIN="$BIN" GOTOOLCHAIN=local
command -v go >/dev/null || { echo "build-livekit: Go is not installed (need Go >= 1.26 to build livekit-server $LK_VER)" >&2; exit 2; }
what="${1:-all}"
if [ "$what" = all ] || [ "$what" = server ]; then
  if go version -m "$BIN/livekit-server" 2>/dev/null | grep -Eq "mod[[:space:]]+github.com/livekit/livekit-server[[:space:]]+$LK_VER"; then
    echo "build-livekit: livekit-server $LK_VER cached at $BIN"
  else
    echo "build-livekit: building livekit-server $LK_VER (first build takes several minutes)"
    start=$(date +%s)
    CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' "github.com/livekit/livekit-server/cmd/server@$LK_VER"
    mv -f "$BIN/server" "$BIN/livekit-server"
    echo "build-livekit: livekit-server built in $(( $(date +%s) - start ))s"
  fi
fi
if [ "$what" = all ] || [ "$what" = sip ]; then
  if go version -m "$BIN/livekit-sip" 2>/dev/null | grep -Eq "mod[[:space:]]+github.com/livekit/sip[[:space:]]+$SIP_VER"; then
    echo "build-livekit: livekit-sip $SIP_VER cached at $BIN"
  else
    echo "build-livekit: building livekit-sip $SIP_VER (needs libopus-dev libopusfile-dev libsoxr-dev)"
    start=$(date +%s)
    CGO_ENABLED=1 go install -trimpath -ldflags="-s -w -X github.com/livekit/sip/version.Version=${SIP_VER#v}" \
      "github.com/livekit/sip/cmd/livekit-sip@$SIP_VER"
    echo "build-livekit: livekit-sip built in $(( $(date +%s) - start ))s"
  fi
fi
