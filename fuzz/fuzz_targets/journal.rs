#![no_main]
// See tokenroll::fuzzing::journal.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenroll::fuzzing::journal(data));
