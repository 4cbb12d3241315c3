#![no_main]
// See tokenroll::fuzzing::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenroll::fuzzing::config(data));
