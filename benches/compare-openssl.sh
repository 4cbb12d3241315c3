#!/usr/bin/env bash
# Bench (b): one-shot `tokenroll sign` as a whole process against `openssl cms -sign -engine pkcs11`
# on the same SoftHSM2 token and content, timed by hyperfine in one run; prints the ratio of medians.
# Needs: softhsm2, libengine-pkcs11-openssl, hyperfine, python3 (packaging/deps.sh installs them).
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
head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/content"
engine=$(ls /usr/lib/*/engines-3/pkcs11.so 2>/dev/null | head -n1)
cat > "$work/openssl.cnf" <<CNF
openssl_conf = conf
[conf]
engines = engines
[engines]
pkcs11 = pkcs11
[pkcs11]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $module
init = 0
CNF
export OPENSSL_CONF=$work/openssl.cnf
ours="$bin sign --token bench --pin-env TOKENROLL_PIN --challenge \"\$(cat $work/content)\" --out $work/ours.p7"
theirs="openssl cms -sign -engine pkcs11 -keyform engine -inkey 'pkcs11:token=bench;id=%01;type=private?pin-value=1234' -signer $work/cert.pem -in $work/content -binary -nodetach -outform DER -out $work/theirs.p7"
# Both outputs must verify before their times mean anything.
eval "$ours" 2>/dev/null && eval "$theirs" 2>/dev/null
for f in ours theirs; do
  openssl cms -verify -binary -inform DER -in "$work/$f.p7" -CAfile "$work/cert.pem" -out /dev/null 2>/dev/null || { echo "$f.p7 does not verify" >&2; exit 1; }
done
hyperfine -N --warmup 5 --runs "${RUNS:-40}" --export-json "$work/h.json" -n tokenroll "$ours" -n openssl "$theirs" >/dev/null 2>&1 \
  || hyperfine --warmup 5 --runs "${RUNS:-40}" --export-json "$work/h.json" -n tokenroll "$ours" -n openssl "$theirs" >/dev/null
python3 - "$work/h.json" "$key" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
t, o = r["tokenroll"]["median"], r["openssl"]["median"]
print(f"key {sys.argv[2]}: tokenroll sign median {t*1e3:.2f} ms, openssl cms -sign -engine pkcs11 median {o*1e3:.2f} ms, ratio {t/o:.2f} (target <= 0.80)")
PY
