//! Every seed and every committed regression input (`regressions/<target>/`, one file per
//! crash the fuzzer found) replayed through its target: none may panic again.

use std::{fs, path::Path};

#[test]
fn seeds_and_regression_inputs_pass_their_targets() {
    for (name, target) in bowline_fuzz::TARGETS {
        let seeds = bowline_fuzz::seeds(name);
        assert!(!seeds.is_empty(), "{name} has seeds");
        for seed in &seeds {
            target(seed);
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("regressions")
            .join(name);
        let mut inputs: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n != ".gitkeep"))
            .collect();
        inputs.sort();
        for input in inputs {
            let bytes = fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{} panics again", input.display());
        }
    }
}

/// The xDS seeds get past the node and the bounds into subscriptions: each stream, SotW
/// and delta, is answered several times (else the fuzzer would start from dead ends).
#[test]
fn the_xds_seeds_are_answered() {
    for seed in bowline_fuzz::seeds("xds") {
        let responses = bowline_fuzz::xds_responses(&seed);
        assert!(responses >= 4, "kind {}: {responses} responses", seed[0]);
    }
}
