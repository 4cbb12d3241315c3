#![no_main]
// See tokenroll::fuzzing::answer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenroll::fuzzing::answer(data));
