#!/usr/bin/env bash
# cargo deny check (advisories, bans, licenses, sources) against the snapshot of RustSec's
# advisory database in ../shared/advisory-db.tar.gz (CI cannot reach its repository):
# unpacked where deny.toml's db-path points, fetching disabled.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null || cargo install --locked --quiet cargo-deny
snapshot="${ADVISORY_DB_SNAPSHOT:-../shared/advisory-db.tar.gz}"
dbs=target/advisory-dbs
rm -rf "$dbs"
mkdir -p "$dbs"
tar xzf "$snapshot" -C "$dbs"
# cargo-deny looks for the database of each db-urls entry in a folder named after the URL
# (its name and a hash of it); --offline keeps it from fetching one. The crates of every
# target are fetched first (from crates.io, which CI reaches) so the graph is whole.
mv "$dbs/advisory-db" "$dbs/advisory-db-3157b0e258782691"
cargo fetch --locked --quiet
echo "cargo deny: advisories from the snapshot $(git -C "$dbs/advisory-db-3157b0e258782691" log -1 --format=%cs 2>/dev/null || echo '(undated)')"
cargo deny --offline --locked check
