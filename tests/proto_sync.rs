//! Proves the committed `src/protocol/message.rs` is exactly what pb-rs generates from
//! `proto/Message.proto` today, so the schema and its generated mirror cannot drift apart.
//!
//! pb-rs runs as a library (dev-dependency, version pinned by Cargo.lock) into a temporary
//! directory; nothing in the source tree is touched unless `LOCALPROXY_REGENERATE_PROTO=1`
//! is set, in which case the fresh output replaces the committed file. The options used here
//! are those of the CLI command `pb-rs --single-mod -o src/protocol/message.rs
//! proto/Message.proto` (`--single-mod` because the file is mounted as
//! `crate::protocol::message`, not under a `com::amazonaws::…` module tree).

use std::path::{Path, PathBuf};

const REGENERATE: &str = "LOCALPROXY_REGENERATE_PROTO";

fn generate(proto: &Path, out_dir: &Path) -> Vec<u8> {
    let out_file = out_dir.join("message.rs");
    let configs = pb_rs::ConfigBuilder::new(&[proto], Some(&out_file.as_path()), None, &[])
        .expect("pb-rs config")
        .single_module(true)
        .build();
    pb_rs::types::FileDescriptor::run(&configs).expect("pb-rs failed on proto/Message.proto");
    std::fs::read(&out_file).expect("pb-rs wrote no message.rs")
}

#[test]
fn message_rs_matches_proto() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto = root.join("proto/Message.proto");
    let committed_path = root.join("src/protocol/message.rs");

    // A private directory per run: tests may run concurrently with other checkouts.
    let out_dir =
        std::env::temp_dir().join(format!("localproxy-proto-sync-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("create temp dir");
    let fresh = generate(&proto, &out_dir);
    let _ = std::fs::remove_dir_all(&out_dir);

    if std::env::var_os(REGENERATE).is_some_and(|v| v == "1") {
        std::fs::write(&committed_path, &fresh).expect("write src/protocol/message.rs");
        return;
    }

    let committed = std::fs::read(&committed_path).expect("read src/protocol/message.rs");
    assert!(
        committed == fresh,
        "src/protocol/message.rs is out of date with proto/Message.proto; regenerate with: \
         {REGENERATE}=1 cargo test --test proto_sync"
    );
}
