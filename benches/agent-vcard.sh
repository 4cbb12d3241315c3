#!/usr/bin/env bash
# Insert-to-state and remove-to-state latency of the agent on the virtual smart card
# (tests/vcard: private pcscd + vpcd + software OpenPGP card), measured, not asserted: from the
# moment the card connects to the reader to the agent's state change, median of $INSERTS
# (default 10), once through OpenSC directly (blocking C_WaitForSlotEvent) and once through the
# p11-kit proxy (PC/SC reader changes). Target: median insert latency at most 0.5 s. Then, with the
# card out and the agent waiting on that event source, its idle CPU over $IDLE seconds (default
# 60; target at most 0.1 % of a core) and its RSS at the end (target at most 15 MB).
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

measure() { # NAME MODULE
  local name=$1 module=$2 state=$work/state-$1 i t0 t1
  mkdir -p "$state/run"
  XDG_STATE_HOME=$state XDG_RUNTIME_DIR=$state/run RUST_LOG=tokenroll::agent=debug \
    "$bin" agent --headless --server https://127.0.0.1:9 --admin bench --user bench \
    --module "$module" --enroll-on-insert never --poll-ms 600000 >/dev/null 2>&1 &
  local pid=$! log=$state/tokenroll/agent.log
  until grep -q "agent starting" "$log" 2>/dev/null; do sleep 0.01; done
  sleep 1
  : >"$work/in" && : >"$work/out"
  for ((i = 1; i <= inserts; i++)); do
    t0=$(now); kill -USR1 "$card_pid"; wait_lines "$log" "event=Inserted" "$i"; t1=$(now)
    echo "$t1 $t0" | awk '{print $1 - $2}' >>"$work/in"
    sleep 0.3
    t0=$(now); kill -USR2 "$card_pid"; wait_lines "$log" "event=Removed" "$i"; t1=$(now)
    echo "$t1 $t0" | awk '{print $1 - $2}' >>"$work/out"
    sleep 0.3
  done
  local source u0 s0 u1 s1
  source=$(grep -o 'source=[A-Za-z]*' "$log" | head -n1)
  read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u0 s0 _ </proc/$pid/stat
  sleep "$idle"
  read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u1 s1 _ </proc/$pid/stat
  local rss
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status)
  printf '%-32s insert median %s s (max %s), removal median %s s, over %d insertions (%s); idle CPU %s%% of a core over %d s, then RSS %s MB\n' \
    "$name" "$(median <"$work/in")" "$(sort -n "$work/in" | tail -n1 | xargs printf "%.3f")" "$(median <"$work/out")" \
    "$inserts" "${source:-no event source}" \
    "$(awk -v d=$(((u1 + s1) - (u0 + s0))) -v hz="$(getconf CLK_TCK)" -v t="$idle" 'BEGIN {printf "%.3f", 100*d/hz/t}')" "$idle" "$rss"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

measure "OpenSC (slot events)" "$opensc"
measure "p11-kit proxy (PC/SC changes)" "$proxy"
