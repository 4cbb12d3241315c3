#!/usr/bin/env bash
# Bench (b): one-shot `tokenroll sign` as a whole process against `openssl cms -sign -engine pkcs11`
# on the same SoftHSM2 token and content, timed by hyperfine in one run; prints the ratio of medians.
# Needs: softhsm2, libengine-pkcs11-openssl, hyperfine, python3 (packaging/deps.sh installs them).
source "$(dirname "$0")/setup.sh"
# Both outputs must verify before their times mean anything.
"${ours[@]}" 2>/dev/null
OPENSSL_CONF=$work/openssl.cnf "${theirs[@]}" 2>/dev/null
for f in ours theirs; do
  openssl cms -verify -binary -inform DER -in "$work/$f.p7" -CAfile "$work/cert.pem" -out /dev/null 2>/dev/null \
    || { echo "$f.p7 does not verify" >&2; exit 1; }
done
quote() { printf '%q ' "$@"; }
OPENSSL_CONF=$work/openssl.cnf hyperfine -N --warmup 5 --runs "${RUNS:-40}" --export-json "$work/h.json" \
  -n tokenroll "$(quote "${ours[@]}")" -n openssl "$(quote "${theirs[@]}")" >/dev/null
python3 - "$work/h.json" "$key" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
t, o = r["tokenroll"]["median"], r["openssl"]["median"]
print(f"key {sys.argv[2]}: tokenroll sign median {t*1e3:.2f} ms, openssl cms -sign -engine pkcs11 median {o*1e3:.2f} ms, ratio {t/o:.2f} (target <= 0.80)")
PY
