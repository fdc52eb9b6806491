#!/usr/bin/env bash
# Takes docs/status.png: a screenshot of the demo-node status page of a
# local three-node cluster, in headless Chromium.
#
#   scripts/screenshot.sh [OUTPUT.png]
#
# It builds cmd/demo-node, starts `demo-node -cluster 3`, reads a few keys
# through every node so that the counters are not zero, takes the
# screenshot, and stops the cluster. Without chromium it says so and exits 0.
set -euo pipefail

cd "$(dirname "$0")/.."
out="${1:-docs/status.png}"

if ! command -v chromium >/dev/null 2>&1; then
	echo "chromium not installed; skipping the screenshot"
	exit 0
fi

work="$(mktemp -d)"
pid=""
cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/demo-node" ./cmd/demo-node
"$work/demo-node" -cluster 3 -load-delay 20ms >"$work/stdout" 2>"$work/stderr" &
pid=$!

for _ in $(seq 600); do
	grep -q '^try: ' "$work/stdout" && break
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "demo-node -cluster 3 exited:" >&2
		cat "$work/stderr" >&2
		exit 1
	fi
	sleep 0.1
done
if ! grep -q '^try: ' "$work/stdout"; then
	echo "demo-node -cluster 3 not ready after 60s" >&2
	exit 1
fi
mapfile -t urls < <(awk '$1 == "node" { print $3 }' "$work/stdout")
url="${urls[0]}"

# Traffic: every user and the home page through every node, twice (load or
# peer, then hit or hot), a few misses, a write and an invalidation.
for round in 1 2; do
	for u in "${urls[@]}"; do
		for k in 1 2 3 4 5; do
			curl -fsS -o /dev/null "${u}v1/users/user:$k"
		done
		curl -fsS -o /dev/null "${u}v1/pages/home"
		curl -sS -o /dev/null "${u}v1/users/user:$((round + 90))"
	done
done
curl -fsS -o /dev/null -X PUT --data 'hello' "${url}v1/pages/greeting?ttl=10m&tags=demo"
curl -fsS -o /dev/null -X DELETE "${url}v1/users/user:1"
curl -fsS -o /dev/null "${urls[1]}v1/users/user:1"

mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
	--user-data-dir="$work/chromium" --hide-scrollbars --virtual-time-budget=3000 \
	--screenshot="$out" --window-size=1280,900 "$url" >"$work/chromium.log" 2>&1 || {
	cat "$work/chromium.log" >&2
	exit 1
}
echo "wrote $out (status page of $url)"
