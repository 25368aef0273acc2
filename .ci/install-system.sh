#!/usr/bin/env bash
# Debian packages the test suite needs: Redis and sipp (telephony e2e), espeak-ng and sox (speech audio),
# iproute2 (the test network namespace), and the cgo libraries livekit-sip links against.
set -euo pipefail
PKGS=(redis-server sip-tester espeak-ng sox iproute2 pkg-config libopus-dev libopusfile-dev libsoxr-dev ffmpeg)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system: all Debian packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-system: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
