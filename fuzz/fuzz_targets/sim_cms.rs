#![no_main]
// See tokenroll::fuzzing::sim_cms.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenroll::fuzzing::sim_cms(data));
