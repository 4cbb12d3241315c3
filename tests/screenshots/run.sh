#!/usr/bin/env bash
# Screenshots of the agent as a person sees it: under Xvfb with xfce4-panel's system tray (an SNI
# host) and pinentry-gtk2. Enrolls a SoftHSM2 token through the tray menu and the PIN dialog,
# checks the simulator recorded it, and writes tray.png, menu.png, pin.png and tray-registered.png
# to OUT (default assets/screenshots, which the README shows). Needs: xvfb xfce4-panel pinentry-gtk2 xdotool imagemagick dbus.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$root/assets/screenshots}")
bin=${TOKENROLL_BIN:-$root/target/debug/tokenroll}
mkdir -p "$out"
work=$(mktemp -d)
cleanup() {
  local status=$?
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  # A service the session bus started (xfconfd) may still be saving into $work as it exits: the
  # folder is removed once it is quiet, and its removal never decides the run's outcome.
  for _ in $(seq 50); do rm -rf "$work" 2>/dev/null && break; sleep 0.1; done
  exit "$status"
}
trap cleanup EXIT
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config XDG_STATE_HOME=$work/state XDG_RUNTIME_DIR=$work/run
mkdir -p "$work/tokens" "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml" "$XDG_RUNTIME_DIR" "$XDG_STATE_HOME"
chmod 700 "$XDG_RUNTIME_DIR"
cp "$here/xfce4-panel.xml" "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml/"
sed "s#@TOKENDIR@#$work/tokens#" "$root/softhsm-config/softhsm2.conf.in" > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
export TOKENROLL_MODULE=$(ls /usr/lib/*/softhsm/libsofthsm2.so /usr/lib/softhsm/libsofthsm2.so 2>/dev/null | head -n1)
export TOKENROLL_PIN=246810 TOKENROLL_SO_PIN=13579111 TOKENROLL_AUTH_TOKEN=shots TOKENROLL_SECRET_CODE=shots
"$bin" provision --init --label "Alice's token" --key-type rsa2048 --id 01 --subject "CN=Alice Example,O=Acme" >/dev/null
printf '[[user]]\nname = "alice"\n' > "$work/users.toml"

display=:$(( 90 + RANDOM % 100 ))
Xvfb "$display" -screen 0 800x420x24 -nolisten tcp >/dev/null 2>&1 &
export DISPLAY=$display
for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done

cat > "$work/session.sh" <<INNER
set -euo pipefail
# Everything started here ends with the session, so nobody holds the caller's pipes open.
trap 'kill \$(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
"$bin" simulate --users "$work/users.toml" --listen 127.0.0.1:0 --admin helpdesk --cert-out "$work/ca.pem" \
  --record "$work/record.jsonl" > "$work/sim.out" &
until grep -q listening "$work/sim.out" 2>/dev/null; do sleep 0.05; done
origin=\$(sed 's/listening on //' "$work/sim.out")
# The colour of one screen pixel, to wait for things to appear instead of sleeping blindly.
pixel() { import -window root -crop 1x1+\$1+\$2 txt:- 2>/dev/null | tail -n 1 | awk '{print \$3}'; }
wait_pixel() { # x y colour-to-leave
  for _ in \$(seq 150); do [ "\$(pixel \$1 \$2)" != "\$3" ] && return 0; sleep 0.1; done; return 1
}
xfce4-panel --disable-wm-check >/dev/null 2>&1 &
wait_pixel 400 10 "#000000"
# The panel draws before its tray registers as the StatusNotifierWatcher; an agent started in
# between finds no tray host. Wait for the watcher.
for _ in \$(seq 100); do
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.kde.StatusNotifierWatcher 2>/dev/null \
    | grep -q 'boolean true' && break
  sleep 0.1
done
bg=\$(pixel 716 16)
"$bin" agent --server "\$origin" --admin helpdesk --user alice --ca-file "$work/ca.pem" \
  --pinentry pinentry-gtk-2 --poll-ms 200 >/dev/null 2>&1 &
# The tray icon sits left of the clock at the right end of the panel.
icon_x=\${ICON_X:-716}
wait_pixel \$icon_x 16 "\$bg"
sleep 0.5
import -window root -crop 800x40+0+0 "$out/tray.png"
menu_bg=\$(pixel \$(( icon_x - 100 )) 74)
xdotool mousemove \$icon_x 16 click 3
wait_pixel \$(( icon_x - 100 )) 74 "\$menu_bg"
sleep 0.5
import -window root "$out/menu.png"
# Click "Enroll token …", the first item under the status line.
xdotool mousemove \$(( icon_x - 100 )) 74 click 1
for _ in \$(seq 100); do xdotool search --name "tokenroll" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
import -window root "$out/pin.png"
xdotool type --delay 30 246810
xdotool key Return
for _ in \$(seq 100); do grep -q '"answer_code":0' "$work/record.jsonl" 2>/dev/null && break; sleep 0.1; done
grep -q '"answer_code":0' "$work/record.jsonl"
sleep 1.5
import -window root -crop 800x40+0+0 "$out/tray-registered.png"
INNER
dbus-run-session -- bash "$work/session.sh" > "$work/session.log" 2>&1 || {
  cat "$work/session.log" >&2
  echo "--- the agent's log:" >&2
  cat "$XDG_STATE_HOME/tokenroll/agent.log" >&2 2>/dev/null
  cp "$XDG_STATE_HOME/tokenroll/agent.log" "$out/agent.log" 2>/dev/null; exit 1; }
echo "screenshots written to $out"
