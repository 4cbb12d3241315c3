#!/usr/bin/env bash
# Where a one-shot signature's work goes, counted in instructions by callgrind (repeatable, unlike
# wall time): tokenroll sign and openssl cms -sign -engine pkcs11 on the same SoftHSM2 token, with
# the part spent inside the PKCS#11 module (load, C_Initialize, C_Login, C_Sign) shown apart.
# Needs valgrind besides what compare-openssl.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/tokenroll
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tokens"
sed "s#@TOKENDIR@#$work/tokens#" softhsm-config/softhsm2.conf.in > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
module=$(ls /usr/lib/*/softhsm/libsofthsm2.so /usr/lib/softhsm/libsofthsm2.so 2>/dev/null | head -n1)
export TOKENROLL_MODULE=$module TOKENROLL_PIN=1234 TOKENROLL_SO_PIN=12345678
key=${KEY_TYPE:-rsa2048}
"$bin" provision --init --label bench --key-type "$key" --id 01 --subject "CN=Bench" --cert-out "$work/cert.pem"
printf 'x%.0s' $(seq 64) > "$work/content"
engine=$(ls /usr/lib/*/engines-3/pkcs11.so 2>/dev/null | head -n1)
printf 'openssl_conf = conf\n[conf]\nengines = engines\n[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\ndynamic_path = %s\nMODULE_PATH = %s\ninit = 0\n' "$engine" "$module" > "$work/openssl.cnf"
count() { # name, command...
  local name=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" "$@" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes "$work/$name.cg" 2>/dev/null | awk -v name="$name" '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /:(C_Initialize|C_Login|C_Sign) \[/ { gsub(",", "", $1); mod += $1 }
    /dlopen@@/ && !seen++ { gsub(",", "", $1); mod += $1 }
    END { printf "%-10s total %6.1f M instructions, in the module %6.1f M, own %5.1f M\n", name, total/1e6, mod/1e6, (total-mod)/1e6; print total > "'"$work"'/" name ".total"; print mod > "'"$work"'/" name ".mod" }'
}
count tokenroll "$bin" sign --token bench --pin-env TOKENROLL_PIN --challenge "$(cat "$work/content")" --out "$work/ours.p7"
OPENSSL_CONF=$work/openssl.cnf count openssl openssl cms -sign -engine pkcs11 -keyform engine \
  -inkey 'pkcs11:token=bench;id=%01;type=private?pin-value=1234' -signer "$work/cert.pem" -in "$work/content" \
  -binary -nodetach -outform DER -out "$work/theirs.p7"
python3 - "$work" "$key" <<'PY'
import sys
w, key = sys.argv[1], sys.argv[2]
r = lambda n: float(open(f"{w}/{n}").read())
t, o, m = r("tokenroll.total"), r("openssl.total"), r("tokenroll.mod")
print(f"key {key}: instruction ratio tokenroll/openssl {t/o:.2f}; the module's own share alone is {m/o:.2f} of openssl's total")
PY
