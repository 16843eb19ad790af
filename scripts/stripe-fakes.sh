#!/usr/bin/env bash
# Installs localstripe (a stateful fake of Stripe's API, from PyPI) into a virtualenv at
# $STRIPE_FAKES_DIR (default /var/tmp/stripe-fakes), where the Stripe tests find it
# (order_gateway_stripe::testing); does nothing when it is there already.
set -euo pipefail

dir="${STRIPE_FAKES_DIR:-/var/tmp/stripe-fakes}"
version="1.15.10"

installed="$("$dir/bin/pip" show localstripe 2>/dev/null || true)"
if [ -x "$dir/bin/localstripe" ] && grep -qx "Version: $version" <<<"$installed"; then
  echo "localstripe $version is installed in $dir"
  exit 0
fi
python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check "localstripe==$version"
echo "localstripe $version installed in $dir"
