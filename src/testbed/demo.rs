//! `testbed demo` (placeholder until written).
pub fn run(_args: Vec<String>) -> i32 {
    eprintln!("testbed demo: not written yet");
    1
}
