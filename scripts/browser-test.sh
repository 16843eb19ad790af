#!/usr/bin/env bash
# Loads /docs (Swagger UI) and /redoc in headless Chromium with the network off, and checks
# that every operation of the OpenAPI document is rendered in each page's DOM.
#
# "Network off": the service and the browser run in a network namespace of their own that
# has nothing but loopback, so a page that needs anything from outside the binary (a CDN
# script, a web font) cannot get it.
#
#   CARGO_TARGET_DIR=... bash scripts/browser-test.sh
#
# Needs root (unshare), iproute2 and Debian's chromium; installs chromium when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --quiet -p order-http
binary="$(realpath "$target/debug/order-http")"
out="$(mktemp -d)"

# Runs inside the namespace: loopback up, the service on it, Chromium against it.
unshare --net bash -s "$binary" "$out" <<'INNER'
set -euo pipefail
binary="$1"; out="$2"; port=18181
ip link set lo up
HOST=127.0.0.1 PORT="$port" LOG_LEVEL=warn "$binary" >"$out/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/openapi.json" >"$out/openapi.json"
if curl -s --max-time 3 -o /dev/null "https://registry.npmjs.org/"; then
  echo "browser-test: the namespace reaches the internet; the test would prove nothing" >&2
  exit 1
fi
for page in docs redoc; do
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --virtual-time-budget=8000 \
    --dump-dom "http://127.0.0.1:$port/$page" >"$out/$page.html" 2>"$out/$page.err"
done
INNER

python3 - "$out" <<'CHECK'
import html, json, sys
out = sys.argv[1]
spec = json.load(open(f"{out}/openapi.json"))
docs = open(f"{out}/docs.html").read()
redoc = html.unescape(open(f"{out}/redoc.html").read())
missing = []
operations = 0
for path, methods in spec["paths"].items():
    if f'data-path="{path}"' not in docs:
        missing.append(f"/docs does not show {path}")
    for method, op in methods.items():
        operations += 1
        summary = op.get("summary") or op.get("description", "").split("\n")[0]
        if summary and summary not in redoc:
            missing.append(f"/redoc does not show {method.upper()} {path} ({summary!r})")
if missing:
    print("browser-test: FAILED\n  " + "\n  ".join(missing))
    sys.exit(1)
print(f"browser-test: /docs and /redoc render all {operations} operations with the network off")
CHECK
