#!/usr/bin/env bash
# Builds the Debian package from one release build:
#   target/debian/tokenroll_<version>-1_<arch>.deb
# Needs cargo-deb (cargo install --locked cargo-deb) and dpkg-dev (for the computed Depends).
# Install it with: sudo apt install ./target/debian/tokenroll_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || {
  echo "cargo-deb is missing: run 'cargo install --locked cargo-deb', then this again" >&2
  exit 1
}
packaging/stage.sh
cargo deb --no-build --locked "$@"
