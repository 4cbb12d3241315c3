#!/usr/bin/env bash
# Builds tokenroll for release once and stages what the packages carry besides the binary: the
# man pages (from the command line's own definitions, gzipped as Debian and Fedora ship them) and
# the bash, zsh and fish completions, under target/packaging/. Used by build-deb.sh and
# build-rpm.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
# The packages' asset lists name target/, so the build goes there.
[ -z "${CARGO_TARGET_DIR:-}" ] || [ "$CARGO_TARGET_DIR" = target ] \
  || { echo "stage.sh: unset CARGO_TARGET_DIR (the packages take their files from target/)" >&2; exit 1; }
target=target
cargo build --release --locked
bin=$target/release/tokenroll
stage=$target/packaging
rm -rf "$stage"
mkdir -p "$stage/man" "$stage/completions"
"$bin" manpages "$stage/man"
gzip -9n "$stage"/man/*.1
"$bin" completions bash > "$stage/completions/tokenroll.bash"
"$bin" completions zsh > "$stage/completions/_tokenroll"
"$bin" completions fish > "$stage/completions/tokenroll.fish"
