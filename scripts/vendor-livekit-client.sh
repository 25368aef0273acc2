#!/usr/bin/env bash
# Refreshes the dashboard's vendored LiveKit JS client from the npm registry (`npm pack`, no install, no build):
# the self-contained UMD bundle, its licence and the version it came from. The dashboard ships these files, so it
# works offline. Usage: scripts/vendor-livekit-client.sh [VERSION] (default: the version in VERSION there now).
set -euo pipefail
DEST="$(cd "$(dirname "$0")/.." && pwd)/api/dashboard/static/vendor/livekit-client"
VERSION="${1:-$(cat "$DEST/VERSION")}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "livekit-client@$VERSION" >/dev/null)
tar -xzf "$WORK"/livekit-client-*.tgz -C "$WORK"
cp "$WORK/package/dist/livekit-client.umd.js" "$DEST/livekit-client.umd.js"
cp "$WORK/package/LICENSE" "$DEST/LICENSE"
node -e 'process.stdout.write(require(process.argv[1]).version + "\n")' "$WORK/package/package.json" > "$DEST/VERSION"
echo "vendored livekit-client $(cat "$DEST/VERSION") into $DEST"
