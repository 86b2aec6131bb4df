//! `bowline-fuzz-afl <target>`: runs one target under `afl-fuzz` (persistent mode).
//! `bowline-fuzz-afl <target> --seeds <dir>` writes the target's seeds into `dir`.

use std::{fs, path::Path};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprintln!("usage: bowline-fuzz-afl <target> [--seeds <dir>]");
        std::process::exit(2);
    };
    let Some(target) = bowline_fuzz::target(name) else {
        let names: Vec<&str> = bowline_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("unknown target {name:?}; targets: {}", names.join(", "));
        std::process::exit(2);
    };
    if let [_, flag, dir] = args.as_slice()
        && flag == "--seeds"
    {
        let dir = Path::new(dir);
        fs::create_dir_all(dir).expect("the seed directory");
        for (i, seed) in bowline_fuzz::seeds(name).iter().enumerate() {
            fs::write(dir.join(format!("seed-{i:03}")), seed).expect("a seed file");
        }
        return;
    }
    // Before the fork server starts (afl.rs defers it to the loop): once, not per child.
    bowline_fuzz::prepare();
    afl::fuzz!(|data: &[u8]| target(data));
}
