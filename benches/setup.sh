# Sourced by the bench scripts: a release build, and a fresh SoftHSM2 token "bench" holding a
# $KEY_TYPE (default rsa2048) pair with id 01, plus an OpenSSL config for the pkcs11 engine.
# Sets: bin, work (removed on exit), module, key, and writes $work/{cert.pem,content,openssl.cnf}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
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
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/content"
engine=$(ls /usr/lib/*/engines-3/pkcs11.so 2>/dev/null | head -n1)
printf 'openssl_conf = conf\n[conf]\nengines = engines\n[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\ndynamic_path = %s\nMODULE_PATH = %s\ninit = 0\n' \
  "$engine" "$module" > "$work/openssl.cnf"
# The two commands being compared, as argument arrays.
ours=("$bin" sign --token bench --pin-env TOKENROLL_PIN --challenge "$(cat "$work/content")" --out "$work/ours.p7")
theirs=(openssl cms -sign -engine pkcs11 -keyform engine -inkey 'pkcs11:token=bench;id=%01;type=private?pin-value=1234'
  -signer "$work/cert.pem" -in "$work/content" -binary -nodetach -outform DER -out "$work/theirs.p7")
