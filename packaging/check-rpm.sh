#!/usr/bin/env bash
# Checks the built RPM against the built .deb: the same files (each in its distribution's folder;
# Debian's copyright, changelog and lintian overrides are Debian's own), the computed library
# requirements plus a pinentry, and the scriptlets. Run after build-deb.sh and build-rpm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "check-rpm: $*" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb=target/debian/tokenroll_${version}-1_$(dpkg --print-architecture).deb
rpm=target/generate-rpm/tokenroll-${version}-1.$(uname -m).rpm
[ -f "$deb" ] || fail "$deb is missing: run packaging/build-deb.sh first"
[ -f "$rpm" ] || fail "$rpm is missing: run packaging/build-rpm.sh first"
# rpm warns on stderr that it runs as root; its errors still end the script under set -e.
rpm_files=$(rpm -qlp "$rpm" | sort)
deb_files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print substr($6, 2)}' \
  | grep -v -e '^/usr/share/doc/tokenroll/copyright$' -e '^/usr/share/doc/tokenroll/changelog.Debian.gz$' \
            -e '^/usr/share/lintian/' \
  | sed -e 's#^/lib/systemd/#/usr/lib/systemd/#' \
        -e 's#^/usr/share/zsh/vendor-completions/#/usr/share/zsh/site-functions/#' | sort)
diff <(echo "$deb_files") <(echo "$rpm_files") || fail "the RPM's files differ from the .deb's (< deb, > rpm)"
requires=$(rpm -qp --requires "$rpm")
for r in 'libc.so.6' 'libpcsclite.so.1' '^pinentry$'; do
  grep -q -- "$r" <<<"$requires" || fail "the RPM does not require $r"
done
scripts=$(rpm -qp --scripts "$rpm")
grep -q 'systemctl --global enable tokenroll-agent.service' <<<"$scripts" \
  || fail "the RPM does not enable the agent's user unit"
grep -q 'rm -rf /var/lib/private/tokenroll-relay' <<<"$scripts" \
  || fail "the RPM does not remove the relay's state on its last removal"
echo "check-rpm: ok ($(wc -l <<<"$rpm_files") files)"
