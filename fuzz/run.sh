#!/usr/bin/env bash
# Fuzzes everything tokenroll parses from untrusted bytes, with libFuzzer through cargo-fuzz on the
# stable toolchain (RUSTC_BOOTSTRAP=1): each target for SECONDS (default 300), JOBS at a time
# (default 2), then prints executions, crashes and corpus size per target and minimises each
# corpus into fuzz/corpus/<target>. Crashes land in fuzz/artifacts/<target>. Both folders are
# committed and replayed by `cargo test` (tests/fuzz_corpus.rs); the fuzzing itself is not CI's.
#   fuzz/run.sh [SECONDS]          TARGETS="answer config" fuzz/run.sh 60
# Needs: cargo install cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
jobs=${JOBS:-2}
read -r -a targets <<<"${TARGETS:-answer challenge pkcs11_uri config cms_verify sim_cms sim_json journal}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
# AddressSanitizer when it builds here, else none (Rust code is memory-safe; the sanitizer
# mostly guards the C in ring).
sanitizer=address
cargo fuzz build --release --sanitizer "$sanitizer" >/dev/null 2>&1 || sanitizer=none
cargo fuzz build --release --sanitizer "$sanitizer" >/dev/null 2>&1
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  local before
  before=$(find "artifacts/$t" -type f | wc -l)
  cargo fuzz run --release --sanitizer "$sanitizer" "$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"$logs/$t.log" 2>&1 || true
  local execs crashes
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n1)
  crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
  cargo fuzz cmin --release --sanitizer "$sanitizer" "$t" "corpus/$t" >/dev/null 2>&1 || true
  printf '%-12s %8s s  %12s executions  %3d crashes  %5d inputs in the minimised corpus\n' \
    "$t" "$secs" "${execs:-?}" "$crashes" "$(find "corpus/$t" -type f | wc -l)" >"$logs/$t.sum"
}
printf 'sanitizer: %s\n' "$sanitizer"
running=0
for t in "${targets[@]}"; do
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
for t in "${targets[@]}"; do cat "$logs/$t.sum"; done
for t in "${targets[@]}"; do
  if grep -q "ERROR: libFuzzer\|panicked" "$logs/$t.log"; then
    echo "--- $t:"; grep -m5 -A5 "panicked\|ERROR: libFuzzer" "$logs/$t.log"
  fi
done
