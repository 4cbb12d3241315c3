#![no_main]
// See tokenroll::fuzzing::challenge.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenroll::fuzzing::challenge(data));
