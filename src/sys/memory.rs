//! Memory the process holds but does not use: pages of its own executable that start-up
//! touched (command line, configuration, OpenSSL's initialisation, the first TLS
//! handshake). The kernel maps them in 64 KiB runs around every page a thread touches,
//! so after start-up most of a static binary counts as resident although the steady
//! state runs a fraction of it.

use std::io;
use std::os::unix::fs::MetadataExt;

/// Drops this process's mappings of the pages of its executable's read-only segments
/// (code and constants). They are clean copies of the file: the next use faults them
/// back in from the page cache, so nothing is lost; the resident set then shows what
/// the proxy actually runs. Writable segments are never touched. Returns the bytes of
/// address space advised.
pub(crate) fn drop_startup_pages() -> io::Result<usize> {
    let exe = std::fs::metadata("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut advised = 0;
    for (start, end) in clean_read_only_mappings(&smaps, exe.ino()) {
        // SAFETY: [start, end) is a whole mapping of this process, from its own smaps:
        // private, not writable, backed by the executable (which the kernel keeps from
        // being written while it runs), and without a single anonymous (copied-on-write)
        // page, so every page is a clean copy of the file: relocated constants (RELRO),
        // which differ from the file, are never in such a mapping. MADV_DONTNEED only
        // discards those copies; the next access re-reads the same bytes, so no Rust
        // reference sees a change.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if r == 0 {
            advised += end - start;
        }
    }
    Ok(advised)
}

/// The [start, end) of every mapping in `smaps` of file `inode` that is private, not
/// writable and holds no anonymous page.
fn clean_read_only_mappings(smaps: &str, inode: u64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            // A mapping's header: "start-end perms offset dev inode [path]".
            current = None;
            let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            let perms = f.next().unwrap_or("");
            let ino = f.nth(2).and_then(|i| i.parse::<u64>().ok());
            let private_read_only =
                perms.len() == 4 && perms.as_bytes()[1] == b'-' && perms.ends_with('p');
            if private_read_only && ino == Some(inode) && end > start {
                current = Some((start, end));
            }
        } else if first == "Anonymous:" {
            if let Some(m) = current.take() {
                if f.next() == Some("0") {
                    out.push(m);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_clean_private_read_only_mappings_of_the_file_are_chosen() {
        let smaps = "\
00400000-00500000 r-xp 00000000 fd:01 42 /bin/x
Rss:                 100 kB
Anonymous:             0 kB
00500000-00600000 r--p 00100000 fd:01 42 /bin/x
Anonymous:             8 kB
00600000-00700000 rw-p 00200000 fd:01 42 /bin/x
Anonymous:             0 kB
00700000-00800000 r--s 00300000 fd:01 42 /bin/x
Anonymous:             0 kB
00800000-00900000 r--p 00000000 fd:01 43 /lib/y
Anonymous:             0 kB
00900000-00a00000 r--p 00400000 fd:01 42 /bin/x
Anonymous:             0 kB
";
        assert_eq!(
            super::clean_read_only_mappings(smaps, 42),
            vec![(0x400000, 0x500000), (0x900000, 0xa00000)]
        );
    }

    #[test]
    fn dropping_start_up_pages_leaves_code_and_constants_working() {
        let before: Vec<u8> = b"constants stay the same".to_vec();
        let advised = super::drop_startup_pages().unwrap();
        assert!(advised > 0, "the test binary's own segments were found");
        // Code runs and constants read the same after the pages were dropped.
        assert_eq!(before, b"constants stay the same");
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
