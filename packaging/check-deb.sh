#!/usr/bin/env bash
# Checks the built .deb as a fleet would meet it: lintian (no error, no warning), then installed
# with apt (which pulls its dependencies), the installed program, man page, doctor and units
# checked, then purged — and nothing of it may be left. A trap purges it even when a check fails.
# Needs root and a machine where installing and purging the package is fine (CI's). Run after
# packaging/build-deb.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
fail() { echo "check-deb: $*" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb=target/debian/tokenroll_${version}-1_$(dpkg --print-architecture).deb
[ -f "$deb" ] || fail "$deb is missing: run packaging/build-deb.sh first"
step() { echo "check-deb: $*"; }

step "lintian $deb"
lintian --fail-on error,warning "$deb"

dpkg-query -W tokenroll >/dev/null 2>&1 && fail "tokenroll is already installed here; purge it first"
purge() { apt-get purge -y -qq tokenroll >/dev/null 2>&1 || true; }
trap purge EXIT
step "apt-get install ./$deb"
apt-get install -y -qq "./$deb" >/dev/null

step "the installed program"
version=$(tokenroll --version)
[ "$version" = "tokenroll $(dpkg-deb -f "$deb" Version | sed 's/-[^-]*$//')" ] || fail "tokenroll --version said '$version'"
[ "$(command -v tokenroll)" = /usr/bin/tokenroll ] || fail "tokenroll is not /usr/bin/tokenroll"
man -w tokenroll | grep -q '/usr/share/man/man1/tokenroll.1.gz' || fail "man -w tokenroll"
man -w tokenroll-doctor | grep -q 'tokenroll-doctor.1.gz' || fail "man -w tokenroll-doctor"
man -P cat tokenroll-enroll 2>/dev/null | grep -q -- '--server' || fail "tokenroll-enroll(1) does not document --server"
bash -c 'source /usr/share/bash-completion/completions/tokenroll && complete -p tokenroll' >/dev/null \
  || fail "the bash completion does not load"

step "tokenroll doctor --json (exit 0 or 1: this machine has no token and may have no pcscd)"
set +e
doctor=$(HOME=$(mktemp -d) tokenroll doctor --json)
rc=$?
set -e
[ "$rc" -le 1 ] || fail "doctor exited $rc"
printf '%s' "$doctor" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert isinstance(r["ok"], bool), r
assert r["checks"], r
for c in r["checks"]:
    assert sorted(c) == ["detail", "fix", "name", "status"], c
    assert c["status"] in ("ok", "warn", "fail", "skip"), c
assert r["ok"] == all(c["status"] != "fail" for c in r["checks"]), r
names = {c["name"].split()[0] for c in r["checks"]}
for n in ("config", "module", "pcscd", "server", "agent", "tray", "autostart"):
    assert n in names, (n, names)
' || fail "doctor's JSON: $doctor"
printf '%s' "$doctor" | grep -q 'tokenroll-agent.desktop' || fail "doctor does not see the installed autostart entry"

step "systemd-analyze verify (offline)"
systemd-analyze verify /lib/systemd/system/tokenroll-relay.service
XDG_RUNTIME_DIR=$(mktemp -d) systemd-analyze --user verify /usr/lib/systemd/user/tokenroll-agent.service
grep -q '^X-GNOME-HiddenUnderSystemd=true' /etc/xdg/autostart/tokenroll-agent.desktop \
  || fail "the autostart entry does not stand aside under systemd"
[ -L /etc/systemd/user/graphical-session.target.wants/tokenroll-agent.service ] \
  || fail "the agent's user unit is not enabled for graphical sessions"

step "removed and installed again: the units are not left masked"
apt-get remove -y -qq tokenroll >/dev/null
[ "$(readlink /etc/systemd/user/tokenroll-agent.service)" = /dev/null ] \
  || fail "removal did not mask the agent's unit (nothing may start a program that is gone)"
apt-get install -y -qq "./$deb" >/dev/null
for u in /etc/systemd/user/tokenroll-agent.service /etc/systemd/system/tokenroll-relay.service; do
  [ ! -L "$u" ] || fail "$u is still a mask after installing again"
done
[ -L /etc/systemd/user/graphical-session.target.wants/tokenroll-agent.service ] \
  || fail "the agent's user unit is not enabled again"

step "apt-get purge tokenroll: nothing of it may be left"
mapfile -t files < <(dpkg -L tokenroll | while read -r f; do [ -d "$f" ] || echo "$f"; done)
[ "${#files[@]}" -gt 20 ] || fail "dpkg -L tokenroll lists only ${#files[@]} files"
apt-get purge -y -qq tokenroll >/dev/null
trap - EXIT
for f in "${files[@]}"; do [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is left after purge"; done
left=$(find /etc /var/lib/systemd /var/lib/dpkg/info /usr/share/doc/tokenroll /usr/lib/systemd \
  -name '*tokenroll*' 2>/dev/null || true)
[ -z "$left" ] || fail "left after purge: $left"
step "ok"
