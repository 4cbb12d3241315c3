#!/usr/bin/env bash
# Agent figures, measured (not asserted): insert-to-state latency for SoftHSM2 tokens created while
# the agent runs (median of $INSERTS), then idle RSS and idle CPU over $DURATION seconds (default 60),
# with the tray on a private D-Bus session. Needs dbus (dbus-run-session) besides the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/tokenroll
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/tokens" "$work/state" "$work/run"
sed "s#@TOKENDIR@#$work/tokens#" softhsm-config/softhsm2.conf.in > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf XDG_STATE_HOME=$work/state XDG_RUNTIME_DIR=$work/run
export TOKENROLL_MODULE=$(ls /usr/lib/*/softhsm/libsofthsm2.so /usr/lib/softhsm/libsofthsm2.so 2>/dev/null | head -n1)
export TOKENROLL_PIN=1234 TOKENROLL_SO_PIN=12345678 TOKENROLL_AUTH_TOKEN=bench TOKENROLL_SECRET_CODE=bench
duration=${DURATION:-60}
inserts=${INSERTS:-5}
cat > "$work/run.sh" <<INNER
set -euo pipefail
RUST_LOG=tokenroll::agent=debug "$bin" agent --server https://127.0.0.1:9 --admin bench --user bench \
  --enroll-on-insert never --poll-ms \${POLL_MS:-500} >/dev/null 2>&1 &
pid=\$!
sleep 2
log=$work/state/tokenroll/agent.log
lat=()
for i in \$(seq $inserts); do
  t0=\$(date +%s.%N)
  "$bin" provision --init --label "bench\$i" --key-type p256 --id 01 --subject "CN=bench\$i" >/dev/null
  until grep -q "label: \\"bench\$i\\"" "\$log"; do sleep 0.005; done
  t1=\$(date +%s.%N)
  lat+=("\$(echo "\$t1 - \$t0" | awk '{print \$1 - \$3}')")
done
printf '%s\n' "\${lat[@]}" | sort -n | awk '{a[NR]=\$1} END {printf "insert-to-state latency (SoftHSM2, provisioning included): median %.3f s over %d inserts\n", a[int((NR+1)/2)], NR}'
sleep 5
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u0 s0 _ < /proc/\$pid/stat
sleep $duration
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u1 s1 _ < /proc/\$pid/stat
rss=\$(awk '/VmRSS/ {print \$2}' /proc/\$pid/status)
hz=\$(getconf CLK_TCK)
awk -v r="\$rss" -v d=\$(( (u1 + s1) - (u0 + s0) )) -v hz="\$hz" -v t=$duration \
  'BEGIN {printf "idle RSS %.1f MB (target <= 15 MB); idle CPU %.3f%% of a core over %d s (target <= 0.1%%)\n", r/1024, 100*d/hz/t, t}'
kill \$pid
INNER
dbus-run-session -- bash "$work/run.sh" 2>/dev/null
