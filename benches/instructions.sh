#!/usr/bin/env bash
# Where a one-shot signature's work goes, counted in instructions by callgrind (repeatable, unlike
# wall time): tokenroll sign and openssl cms -sign -engine pkcs11 on the same SoftHSM2 token, with
# the part spent inside the PKCS#11 module (load, C_Initialize, C_Login, C_Sign) shown apart.
# Needs valgrind besides what compare-openssl.sh needs.
source "$(dirname "$0")/setup.sh"
count() { # name, command...
  local name=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" "$@" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes "$work/$name.cg" 2>/dev/null | awk -v name="$name" '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /:(C_Initialize|C_Login|C_Sign) \[/ { gsub(",", "", $1); mod += $1 }
    /dlopen@@/ && !seen++ { gsub(",", "", $1); mod += $1 }
    END { printf "%-10s total %6.1f M instructions, in the module %6.1f M, own %5.1f M\n", name, total/1e6, mod/1e6, (total-mod)/1e6; print total > "'"$work"'/" name ".total"; print mod > "'"$work"'/" name ".mod" }'
}
count tokenroll "${ours[@]}"
OPENSSL_CONF=$work/openssl.cnf count openssl "${theirs[@]}"
python3 - "$work" "$key" <<'PY'
import sys
w, key = sys.argv[1], sys.argv[2]
r = lambda n: float(open(f"{w}/{n}").read())
t, o, m = r("tokenroll.total"), r("openssl.total"), r("tokenroll.mod")
print(f"key {key}: instruction ratio tokenroll/openssl {t/o:.2f}; the module's own share alone is {m/o:.2f} of openssl's total")
PY
