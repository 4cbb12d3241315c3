#!/usr/bin/env bash
# Installs what tokenroll's demo and tests need on Debian/Ubuntu, if it is missing.
# Run as root, or as a user with sudo. Safe to run again.
set -euo pipefail
pkgs=(softhsm2 opensc p11-kit p11-kit-modules openssl libengine-pkcs11-openssl gnutls-bin dbus ca-certificates hyperfine xvfb xfce4-panel pinentry-gtk2 xdotool imagemagick x11-utils pcscd vsmartcard-vpcd libpcsclite-dev python3-venv iproute2 postgresql tmux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 1; }
