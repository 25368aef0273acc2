#!/usr/bin/env bash
# Debian packages the tests and benchmarks need: espeak-ng and sox (speech audio), iproute2 (the test network
# namespace), ffmpeg (audio the provider fakes serve), wrk (API throughput benchmark), redis-server (the shared
# rate-limit buckets' tests and the SIP tier), sip-tester (sipp: the SIP callee of the SIP tier), pkg-config and
# libopus/libopusfile/libsoxr headers (livekit-sip is built with cgo against them), chromium (the dashboard's
# browser tests drive it through Playwright; Playwright never downloads a browser), postgresql (the store-touching
# tests run a second time on a real PostgreSQL, started by the harness as the postgres user in a temp dir).
set -euo pipefail
PKGS=(postgresql espeak-ng sox iproute2 ffmpeg wrk redis-server sip-tester pkg-config libopus-dev libopusfile-dev libsoxr-dev chromium)
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
