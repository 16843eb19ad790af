#!/usr/bin/env bash
# Installs the two Stripe fakes the Stripe adapter's tests run against, each only when it
# is not there already:
# - localstripe (PyPI), a stateful fake of Stripe's API with PaymentIntents, into a
#   virtualenv at $STRIPE_FAKES_DIR (default /var/tmp/stripe-fakes);
# - stripe-stateful-mock (npm), a fake with Stripe's idempotency layer and injected
#   faults, into .fakes/npm at the root of the checkout (it needs Node.js: Debian's
#   nodejs and npm are installed when missing).
# The tests find them there (order_gateway_stripe::testing, ::stateful_mock).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${STRIPE_FAKES_DIR:-/var/tmp/stripe-fakes}"
version="1.15.10"
mock_version="0.0.16"

installed="$("$dir/bin/pip" show localstripe 2>/dev/null || true)"
if [ -x "$dir/bin/localstripe" ] && grep -qx "Version: $version" <<<"$installed"; then
  echo "localstripe $version is installed in $dir"
else
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "localstripe==$version"
  echo "localstripe $version installed in $dir"
fi

npm_dir="$root/.fakes/npm"
package="$npm_dir/node_modules/stripe-stateful-mock/package.json"
if [ -f "$package" ] && grep -q "\"version\": \"$mock_version\"" "$package"; then
  echo "stripe-stateful-mock $mock_version is installed in $npm_dir"
  exit 0
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
mkdir -p "$npm_dir"
npm install --prefix "$npm_dir" --no-audit --no-fund --silent "stripe-stateful-mock@$mock_version"
echo "stripe-stateful-mock $mock_version installed in $npm_dir"
