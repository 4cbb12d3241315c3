#![no_main]
// See tokenroll::fuzzing::pkcs11_uri.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenroll::fuzzing::pkcs11_uri(data));
