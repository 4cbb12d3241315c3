#!/usr/bin/env bash
# Checks the built RPM against the built .deb: the same files (each in its distribution's folder;
# Debian's copyright, changelog and lintian overrides are Debian's own), the computed library
# requirements plus a pinentry, and the scriptlets. Run after build-deb.sh and build-rpm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls target/debian/tokenroll_*.deb | tail -n 1)
rpm=$(ls target/generate-rpm/tokenroll-*.rpm | tail -n 1)
fail() { echo "check-rpm: $*" >&2; exit 1; }
rpm_files=$(rpm -qlp "$rpm" 2>/dev/null | sort)
deb_files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print substr($6, 2)}' \
  | grep -v -e '^/usr/share/doc/tokenroll/copyright$' -e '^/usr/share/doc/tokenroll/changelog.Debian.gz$' \
            -e '^/usr/share/lintian/' \
  | sed -e 's#^/lib/systemd/#/usr/lib/systemd/#' \
        -e 's#^/usr/share/zsh/vendor-completions/#/usr/share/zsh/site-functions/#' | sort)
diff <(echo "$deb_files") <(echo "$rpm_files") || fail "the RPM's files differ from the .deb's (< deb, > rpm)"
requires=$(rpm -qp --requires "$rpm" 2>/dev/null)
for r in 'libc.so.6' 'libpcsclite.so.1' '^pinentry$'; do
  grep -q -- "$r" <<<"$requires" || fail "the RPM does not require $r"
done
rpm -qp --scripts "$rpm" 2>/dev/null | grep -q 'systemctl --global enable tokenroll-agent.service' \
  || fail "the RPM does not enable the agent's user unit"
echo "check-rpm: ok ($(wc -l <<<"$rpm_files") files)"
