#!/usr/bin/env bash
# Insert-to-state and remove-to-state latency of the agent on the virtual smart card
# (tests/vcard: private pcscd + vpcd + software OpenPGP card), measured, not asserted: from the
# moment the card connects to the reader to the agent's state change, median of $INSERTS
# (default 10), once through OpenSC directly (blocking C_WaitForSlotEvent) and once through the
# p11-kit proxy (PC/SC reader changes). Target: median insert latency at most 0.5 s. Before the
# insertions, with the card out and the agent waiting on that event source: its RSS after $IDLE
# seconds (default 60; target at most 15 MB) and its CPU over the next $IDLE seconds (target at
# most 0.1 % of a core).
# Needs what the tests need (packaging/deps.sh) and root or user namespaces for pcscd.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/tokenroll
vcard=$PWD/tests/vcard/vcard.sh
work=$(mktemp -d)
trap '"$vcard" down "$work/card" >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
inserts=${INSERTS:-10}
idle=${IDLE:-60}
opensc=$(ls /usr/lib/*/opensc-pkcs11.so | head -n1)
proxy=$(ls /usr/lib/*/p11-kit-proxy.so | head -n1)

"$vcard" up "$work/card" >/dev/null
"$vcard" insert "$work/card"
"$vcard" personalize "$work/card" "Bench Card" bench@example.com 2>/dev/null
"$vcard" remove "$work/card"
export PCSCLITE_CSOCK_NAME=$work/card/pcscd.comm TOKENROLL_AUTH_TOKEN=bench TOKENROLL_SECRET_CODE=bench
card_pid=$(cat "$work/card/card.pid")

now() { date +%s.%N; }
# Waits until the log holds N lines matching PATTERN.
wait_lines() { until [ "$(grep -c "$2" "$1" || true)" -ge "$3" ]; do sleep 0.002; done; }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

measure() { # NAME MODULE
  local name=$1 module=$2 state=$work/state-$1 i t0 t1
  mkdir -p "$state/run"
  XDG_STATE_HOME=$state XDG_RUNTIME_DIR=$state/run RUST_LOG=tokenroll::agent=debug \
    "$bin" agent --headless --server https://127.0.0.1:9 --admin bench --user bench \
    --module "$module" --enroll-on-insert never --poll-ms 600000 >/dev/null 2>&1 &
  local pid=$! log=$state/tokenroll/agent.log
  until grep -q "agent starting" "$log" 2>/dev/null; do sleep 0.01; done
  # Idle, the card out: RSS after $idle s, then CPU over the next $idle s.
  sleep "$idle"
  local rss_idle c0 c1 cpu
  rss_idle=$(rss_mb "$pid")
  c0=$(cpu_ticks "$pid"); sleep "$idle"; c1=$(cpu_ticks "$pid")
  cpu=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v t="$idle" 'BEGIN {printf "%.3f", 100*d/hz/t}')
  : >"$work/in" && : >"$work/out"
  for ((i = 1; i <= inserts; i++)); do
    t0=$(now); kill -USR1 "$card_pid"; wait_lines "$log" "event=Inserted" "$i"; t1=$(now)
    echo "$t1 $t0" | awk '{print $1 - $2}' >>"$work/in"
    sleep 0.3
    t0=$(now); kill -USR2 "$card_pid"; wait_lines "$log" "event=Removed" "$i"; t1=$(now)
    echo "$t1 $t0" | awk '{print $1 - $2}' >>"$work/out"
    sleep 0.3
  done
  local source
  source=$(grep -o 'source=[A-Za-z]*' "$log" | head -n1)
  printf '%s (%s)\n' "$name" "${source:-no event source}"
  printf '  insert-to-state  median %s s, max %s s over %d insertions (target <= 0.5 s)\n' \
    "$(median <"$work/in")" "$(sort -n "$work/in" | tail -n1 | xargs printf "%.3f")" "$inserts"
  printf '  remove-to-state  median %s s\n' "$(median <"$work/out")"
  printf '  idle RSS after %d s: %s MB (target <= 15 MB); after the insertions: %s MB\n' \
    "$idle" "$rss_idle" "$(rss_mb "$pid")"
  printf '  idle CPU over %d s: %s%% of a core (target <= 0.1%%)\n' "$idle" "$cpu"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

measure "OpenSC (slot events)" "$opensc"
measure "p11-kit proxy (PC/SC changes)" "$proxy"
