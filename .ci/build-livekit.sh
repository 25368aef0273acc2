#!/usr/bin/env bash
# Builds the pinned livekit-server and livekit-sip into a cache outside the repo (both from the Go module proxy;
# livekit-sip from source next to the repo when the proxy refuses it). Rebuilds only when the cached binary is not
# the pinned version.
#   .ci/build-livekit.sh [all|server|sip]
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
  # Two ways to the same binary. The module proxy (`go install`) where it serves github.com/livekit/sip; else the
  # source trees at the commits v1.11.0 pins, kept next to the repo (../shared/livekit-sip, README there), whose build
  # script adds two `replace` lines. A replace-built binary's main module shows as "(devel)" in `go version -m`, so
  # the cache check for it is a stamp file next to the binary: "<version> <sha256 of the binary>".
  SIP_OUT="$BIN/livekit-sip"
  SIP_STAMP="$BIN/livekit-sip.stamp"
  REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  SIP_SRC="${VOXARENA_LIVEKIT_SIP_SRC:-$(dirname "$REPO")/shared/livekit-sip}"
  sip_cached() {
    [ -x "$SIP_OUT" ] || return 1
    go version -m "$SIP_OUT" 2>/dev/null | grep -Eq "mod[[:space:]]+github.com/livekit/sip[[:space:]]+$SIP_VER" && return 0
    [ -f "$SIP_STAMP" ] && [ "$(cat "$SIP_STAMP")" = "$SIP_VER $(sha256sum "$SIP_OUT" | cut -d' ' -f1)" ]
  }
  if sip_cached; then
    echo "build-livekit: livekit-sip $SIP_VER cached at $BIN"
  else
    echo "build-livekit: building livekit-sip $SIP_VER (cgo; needs pkg-config libopus-dev libopusfile-dev libsoxr-dev)"
    start=$(date +%s)
    rm -f "$SIP_STAMP"
    echo "build-livekit: trying the Go module proxy (go install github.com/livekit/sip/cmd/livekit-sip@$SIP_VER)"
    if CGO_ENABLED=1 nice -n 19 go install -trimpath \
         -ldflags="-s -w -X github.com/livekit/sip/version.Version=${SIP_VER#v}" \
         "github.com/livekit/sip/cmd/livekit-sip@$SIP_VER"; then
      echo "build-livekit: livekit-sip built from the module proxy in $(( $(date +%s) - start ))s"
    else
      echo "build-livekit: the module proxy could not build livekit-sip $SIP_VER; building from source in $SIP_SRC"
      if [ ! -x "$SIP_SRC/build-livekit-sip.sh" ] || [ ! -d "$SIP_SRC/src" ]; then
        echo "build-livekit: no livekit-sip source at $SIP_SRC (want build-livekit-sip.sh and src/ there)." >&2
        echo "  Fix one of: let the Go module proxy serve github.com/livekit/sip@$SIP_VER (GOPROXY);" >&2
        echo "  or set VOXARENA_LIVEKIT_SIP_SRC to a folder holding build-livekit-sip.sh and src/{sip,media-sdk,protocol};" >&2
        echo "  or put a livekit-sip $SIP_VER binary at $SIP_OUT and write \"$SIP_VER <its sha256>\" to $SIP_STAMP." >&2
        exit 2
      fi
      # The source build script pins its own version; refuse a mismatch rather than caching a wrong binary.
      src_ver="v$(sed -n 's/^VERSION=//p' "$SIP_SRC/build-livekit-sip.sh")"
      if [ "$src_ver" != "$SIP_VER" ]; then
        echo "build-livekit: $SIP_SRC builds livekit-sip $src_ver, not $SIP_VER (VOXARENA_LIVEKIT_SIP_VERSION)" >&2
        exit 2
      fi
      tmp_out="$BIN/.livekit-sip.$$"
      trap 'rm -f "$tmp_out"' EXIT
      if ! "$SIP_SRC/build-livekit-sip.sh" "$SIP_SRC/src" "$tmp_out"; then
        echo "build-livekit: building livekit-sip from $SIP_SRC failed (see above). It needs Go >= 1.26, a C compiler," >&2
        echo "  pkg-config, libopus-dev libopusfile-dev libsoxr-dev (.ci/install-system.sh) and the module proxy for" >&2
        echo "  the other modules (SIPKIT_GOPROXY=off builds offline from a warm module cache)." >&2
        exit 2
      fi
      "$tmp_out" --version | grep -q "${SIP_VER#v}" || {
        echo "build-livekit: the built livekit-sip does not report version ${SIP_VER#v}: $("$tmp_out" --version)" >&2; exit 2; }
      mv -f "$tmp_out" "$SIP_OUT"
      echo "$SIP_VER $(sha256sum "$SIP_OUT" | cut -d' ' -f1)" > "$SIP_STAMP"
      echo "build-livekit: livekit-sip built from source in $(( $(date +%s) - start ))s ($(cat "$SIP_STAMP"))"
    fi
  fi
fi
