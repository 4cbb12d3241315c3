#!/usr/bin/env bash
# Builds the RPM from one release build (the same files as the .deb, in Fedora's folders):
#   target/generate-rpm/tokenroll-<version>-1.<arch>.rpm
# Needs cargo-generate-rpm (cargo install --locked cargo-generate-rpm).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-generate-rpm >/dev/null || {
  echo "cargo-generate-rpm is missing: run 'cargo install --locked cargo-generate-rpm', then this again" >&2
  exit 1
}
[ "${TOKENROLL_STAGED:-}" = 1 ] || packaging/stage.sh
cargo generate-rpm "$@"
