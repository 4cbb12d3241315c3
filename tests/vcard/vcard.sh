#!/usr/bin/env bash
# A real smart-card stack for tokenroll's tests: a private pcscd with the vsmartcard vpcd
# reader driver, and a software OpenPGP card (card.py) that can be inserted and removed.
# Clients reach it through OpenSC's opensc-pkcs11.so with PCSCLITE_CSOCK_NAME=DIR/pcscd.comm.
#
#   vcard.sh up DIR        start pcscd and the card process (card removed); prints the socket
#   vcard.sh insert DIR    insert the card and wait until pcscd has powered it up
#   vcard.sh remove DIR    remove it
#   vcard.sh pull-mid-sign DIR
#                          remove the card when the next signing command reaches it
#   vcard.sh personalize DIR CN EMAIL
#                          generate the signing key (id 01) on the inserted card and store a
#                          certificate for it from a throwaway CA (DIR/ca.pem)
#   vcard.sh down DIR      stop everything started under DIR
#   vcard.sh venv          only build the Python venv (target/vcard-venv)
#
# pcscd 1.9.9 always listens on /run/pcscd/pcscd.comm, so it runs in a private mount
# namespace with DIR bind-mounted there; each DIR gets its own free vpcd port, so tests run
# in parallel. Needs root, or unprivileged user namespaces (then `unshare -r` is used).
# Packages: pcscd vsmartcard-vpcd opensc python3-venv (packaging/deps.sh installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${TOKENROLL_VCARD_VENV:-$repo/target/vcard-venv}
driver=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
opensc=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
[ -e "$opensc" ] || opensc=$(ls /usr/lib/*/opensc-pkcs11.so 2>/dev/null | head -n1)
USER_PIN=123456
ADMIN_PIN=12345678

die() { echo "vcard: $*" >&2; exit 1; }

need() {
  command -v pcscd >/dev/null || die "pcscd is missing: apt-get install pcscd (or run packaging/deps.sh)"
  [ -e "$driver" ] || die "$driver is missing: apt-get install vsmartcard-vpcd"
  [ -n "$opensc" ] && [ -e "$opensc" ] || die "opensc-pkcs11.so is missing: apt-get install opensc-pkcs11"
}

# The emulator and its pinned dependencies, built once and shared by every test (flock:
# parallel tests may all ask at the same moment).
ensure_venv() {
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv" 2>/dev/null || die "python3 -m venv failed: apt-get install python3-venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$here/requirements.txt" >&2 \
      || { rm -rf "$venv"; die "pip could not install the card emulator (PyPI unreachable?)"; }
    cp "$here/requirements.txt" "$venv/requirements.txt"
  fi
  flock -u 9
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

powered_count() { grep -c '^powered' "$1/card.out" 2>/dev/null || true; }
removed_count() { grep -c '^removed' "$1/card.out" 2>/dev/null || true; }

wait_for() { # DIR WHAT COUNT
  local i
  for ((i = 0; i < 200; i++)); do
    [ "$("${2}_count" "$1")" -ge "$3" ] && return 0
    kill -0 "$(cat "$1/card.pid")" 2>/dev/null || die "the card process died: $(tail -n 5 "$1/card.err")"
    sleep 0.05
  done
  die "timed out waiting for the card to be $2"
}

up() {
  local dir=$1
  need
  ensure_venv
  mkdir -p "$dir/readers"
  dir=$(cd "$dir" && pwd)
  local port unshare_flags=(-m)
  [ "$(id -u)" -eq 0 ] || unshare_flags=(-r -m)
  # pcscd binds a port per reader (port and port+1); retry if another test took one.
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    printf 'FRIENDLYNAME "tokenroll test reader"\nDEVICENAME /dev/null:%s\nLIBPATH %s\nCHANNELID %s\n' \
      "$(printf '0x%X' "$port")" "$driver" "$(printf '0x%X' "$port")" >"$dir/readers/vpcd"
    rm -f "$dir/pcscd.comm"
    unshare "${unshare_flags[@]}" sh -c '
      mount --make-rprivate / && mount -t tmpfs tmpfs /run && mkdir -p /run/pcscd &&
      mount --bind "$1" /run/pcscd && exec pcscd -f -c "$1/readers"' sh "$dir" \
      >"$dir/pcscd.log" 2>&1 &
    # Not pcscd.pid: pcscd writes that name into DIR itself.
    echo $! >"$dir/launcher.pid"
    local i ok=""
    for ((i = 0; i < 100; i++)); do
      if [ -S "$dir/pcscd.comm" ] && ss -ltn "sport = :$port" | grep -q LISTEN; then ok=1; break; fi
      kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null || break
      sleep 0.05
    done
    [ -n "$ok" ] && break
    kill "$(cat "$dir/launcher.pid")" 2>/dev/null || true
    wait "$(cat "$dir/launcher.pid")" 2>/dev/null || true
    [ "$attempt" -lt 5 ] || die "pcscd did not start: $(tail -n 5 "$dir/pcscd.log")"
  done
  echo "$port" >"$dir/port"
  : >"$dir/card.out"
  # setsid: the card must not share the caller's process group (a test's Ctrl-C or kill).
  setsid "$venv/bin/python" "$here/card.py" --store "$dir/card.fs" --port "$port" \
    >"$dir/card.out" 2>"$dir/card.err" </dev/null &
  echo $! >"$dir/card.pid"
  local i
  for ((i = 0; i < 200; i++)); do
    grep -q '^ready' "$dir/card.out" && break
    kill -0 "$(cat "$dir/card.pid")" 2>/dev/null || die "the card did not start: $(tail -n 5 "$dir/card.err")"
    sleep 0.05
  done
  grep -q '^ready' "$dir/card.out" || die "the card did not start in 10 s"
  echo "PCSCLITE_CSOCK_NAME=$dir/pcscd.comm"
}

insert() {
  local n
  n=$(powered_count "$1")
  kill -USR1 "$(cat "$1/card.pid")"
  wait_for "$1" powered $((n + 1))
}

remove() {
  local n
  n=$(removed_count "$1")
  kill -USR2 "$(cat "$1/card.pid")"
  wait_for "$1" removed $((n + 1))
}

pull_mid_sign() {
  kill -HUP "$(cat "$1/card.pid")"
}

personalize() {
  local dir cn=$2 email=$3
  dir=$(cd "$1" && pwd)
  export PCSCLITE_CSOCK_NAME=$dir/pcscd.comm
  local p11=(pkcs11-tool --module "$opensc")
  # The admin PIN is the SO PIN through OpenSC.
  "${p11[@]}" --login --login-type so --so-pin "$ADMIN_PIN" \
    --keypairgen --key-type rsa:2048 --id 01 >"$dir/personalize.log" 2>&1 \
    || die "key generation failed: $(tail -n 5 "$dir/personalize.log")"
  "${p11[@]}" --token-label "OpenPGP card (User PIN (sig))" --read-object --type pubkey --id 01 -o "$dir/signing-key.der" >>"$dir/personalize.log" 2>&1 \
    || die "reading the public key failed: $(tail -n 5 "$dir/personalize.log")"
  "$venv/bin/python" "$here/mkcert.py" "$dir/signing-key.der" "$cn" "$email" "$dir/cert.der" "$dir/ca.pem"
  # The card has one certificate DO; OpenSC shows it for every key slot.
  "${p11[@]}" --login --login-type so --so-pin "$ADMIN_PIN" \
    --write-object "$dir/cert.der" --type cert --id 03 >>"$dir/personalize.log" 2>&1 \
    || die "storing the certificate failed: $(tail -n 5 "$dir/personalize.log")"
}

down() {
  local dir=$1 f pid
  for f in card launcher; do
    [ -f "$dir/$f.pid" ] || continue
    pid=$(cat "$dir/$f.pid")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$f.pid"
  done
}

case "${1:-}" in
  up | insert | remove | down)
    [ $# -eq 2 ] || die "usage: $0 $1 DIR"
    "$1" "$2" ;;
  pull-mid-sign)
    [ $# -eq 2 ] || die "usage: $0 $1 DIR"
    pull_mid_sign "$2" ;;
  personalize)
    [ $# -eq 4 ] || die "usage: $0 personalize DIR CN EMAIL"
    personalize "$2" "$3" "$4" ;;
  venv) ensure_venv ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
