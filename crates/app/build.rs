//! Rebuild when the embedded demo changes.
fn main() {
    println!("cargo:rerun-if-changed=../../examples/demo");
}
