#![no_main]
// See tokenroll::fuzzing::cms_verify.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenroll::fuzzing::cms_verify(data));
