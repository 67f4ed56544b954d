fn main() {
    println!("localproxy {}", env!("CARGO_PKG_VERSION"));
}
