#!/usr/bin/env bash
# Open an HTML report in headless Chromium, save a full-page screenshot and fail on any
# console error.  Usage: benchmarks/screenshot_report.sh REPORT.html OUT.png [WIDTH] [HEIGHT]
# Needs Debian's `chromium` (apt-get install chromium); the test suite does not.
set -euo pipefail
report=${1:?usage: $0 REPORT.html OUT.png [WIDTH] [HEIGHT]}
png=${2:?usage: $0 REPORT.html OUT.png [WIDTH] [HEIGHT]}
width=${3:-1280}
height=${4:-6000}
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium not found (apt-get install chromium)" >&2; exit 2; }
url="file://$(realpath "$report")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-sandbox: containers run as root; the page is local and self-contained.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --enable-logging=stderr --v=0 --window-size="$width,$height" \
    --screenshot="$(realpath -m "$png")" "$url" 2>"$log" >/dev/null
# Chromium logs page errors as CONSOLE(...) lines; a failed load as ERR_ lines.
if grep -E 'CONSOLE|Uncaught|ERR_(FILE|NAME|CONNECTION)|net::' "$log"; then
    echo "page errors while rendering $report (above)" >&2
    exit 1
fi
echo "$png"
