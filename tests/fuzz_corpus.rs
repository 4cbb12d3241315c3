//! The fuzzers' saved corpus and every crash they found, replayed as an ordinary test: each input
//! goes through the same entry point its fuzz target uses (`tokenroll::fuzzing`) and must not
//! panic. The fuzzing itself (`fuzz/run.sh`) stays out of CI.

use std::path::Path;

#[test]
fn every_saved_input_and_crash_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, run) in tokenroll::fuzzing::TARGETS {
        let mut count = 0;
        for dir in ["corpus", "artifacts", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                let result = std::panic::catch_unwind(|| run(&data));
                assert!(result.is_ok(), "{name}: {} panics", e.path().display());
                count += 1;
            }
        }
        // A target without a corpus means the fuzzing was never run or its output was lost.
        assert!(count > 0, "no saved inputs for fuzz target {name}");
    }
}
