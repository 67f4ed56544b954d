//! The sandbox's policy: once the configuration is read, the listeners' privileges
//! settled and the TLS connector built, and before the I/O threads start, the process
//! limits itself to the system calls on `sys::sandbox`'s allow-list and (where the
//! kernel has Landlock) to reading the few paths the rest of the run needs, listed by
//! [`read_paths`]. Nothing is writable. `--no-sandbox` turns it off.
//!
//! This file decides what is allowed and logs what was achieved; the filters, the
//! system calls that install them and the allow-list itself are in `sys::sandbox`. It
//! does not decide when: `run` calls [`start`] at the one point where that is true.

use crate::config::Config;
use crate::sys::sandbox as os;
use crate::trust;
use std::path::{Path, PathBuf};

/// The test hook's variable: `exec` or `shadow` (or both, `exec,shadow`). Read once at
/// start; on SIGUSR1 the proxy then *tries* that forbidden call and logs the result.
/// It cannot be used to do anything: the execve names a path that does not exist and
/// the file is opened and closed without a byte read.
pub const PROBE_ENV: &str = "LOCALPROXY_TEST_SANDBOX_PROBE";

/// Resolver files both libcs read for a name lookup (glibc also `nsswitch.conf`,
/// `gai.conf`, `host.conf`; musl only the first two).
const RESOLVER_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
];

/// Where glibc keeps the NSS modules it may load for a lookup (`hosts:` in
/// nsswitch.conf naming `mdns4_minimal`, `myhostname`, `resolve`, ...).
#[cfg(target_env = "gnu")]
const LIB_DIRS: &[&str] = &[
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/arm-linux-gnueabihf",
    "/usr/lib/arm-linux-gnueabihf",
];

/// Every path the run may still read after [`start`], and why:
/// - `--access-token-file`, re-read at every connection attempt;
/// - the CA store the connector uses (the chosen bundle and hashed directories, which
///   OpenSSL reads certificate by certificate at each handshake) and `-c`;
/// - the resolver's files; where `/etc/resolv.conf` is a link (OpenWrt, systemd), its
///   target and, when that lies in a directory of its own below the top level, that
///   directory, because DHCP clients replace the file by renaming;
/// - glibc builds: `/etc/ld.so.cache` and the `libnss_*` modules;
/// - `/dev/urandom` (the backoff's seed) and this process's `/proc` directory
///   (`sys::memory` reads `smaps`).
///
/// A Unix-socket target needs no rule: Landlock does not govern connect(2).
pub(crate) fn read_paths(config: &Config, store: &trust::Choice) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    v.extend(config.access_token_file.iter().cloned());
    v.extend(store.file.iter().cloned());
    v.extend(store.dirs.iter().cloned());
    v.extend(config.capath.iter().cloned());
    for f in RESOLVER_FILES {
        v.push(PathBuf::from(f));
    }
    if let Ok(target) = std::fs::canonicalize("/etc/resolv.conf") {
        v.extend(resolv_conf_target(&target));
    }
    #[cfg(target_env = "gnu")]
    {
        v.push(PathBuf::from("/etc/ld.so.cache"));
        for dir in LIB_DIRS {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("libnss_") {
                    v.push(e.path());
                }
            }
        }
    }
    v.push(PathBuf::from("/dev/urandom"));
    v.push(PathBuf::from(format!("/proc/{}", std::process::id())));
    v
}

/// What to add for `/etc/resolv.conf` when it leads to `target`: nothing if it is no
/// link; else the target, and its directory when that is one of its own
/// (/tmp/resolv.conf.d, /run/systemd/resolve), never a whole /tmp or /run.
fn resolv_conf_target(target: &Path) -> Vec<PathBuf> {
    if target == Path::new("/etc/resolv.conf") {
        return Vec::new();
    }
    let mut v = vec![target.to_path_buf()];
    if let Some(dir) = target.parent().filter(|d| d.components().count() > 2) {
        v.push(dir.to_path_buf());
    }
    v
}

/// Installs the sandbox (unless `--no-sandbox`) and logs one line saying what it is:
/// INFO `sandbox: on (seccomp N calls, landlock ABI vK, M read-only paths)`, or one
/// WARN line naming what the kernel lacks; the run goes on either way. `setid_pending`:
/// another thread still has to apply `--user`.
pub(crate) fn start(config: &Config, store: &trust::Choice, setid_pending: bool) {
    if !config.sandbox {
        log::info!("sandbox: off (--no-sandbox)");
        return;
    }
    let read = read_paths(config, store);
    for p in &read {
        log::debug!("sandbox: may read {}", p.display());
    }
    log::debug!(
        "sandbox: seccomp allow-list: {}",
        os::describe_list(setid_pending)
    );
    let report = os::install(&os::Plan {
        read,
        allow_setid: setid_pending,
    });
    match (&report.seccomp, &report.landlock) {
        (Ok(n), Ok((abi, paths))) => log::info!(
            "sandbox: on (seccomp {n} calls, landlock ABI v{abi}, {paths} read-only paths)"
        ),
        (Ok(n), Err(why)) => log::warn!(
            "sandbox: seccomp only ({n} calls); {why}, so the file system is not limited"
        ),
        (Err(why), Ok((abi, paths))) => log::warn!(
            "sandbox: landlock only (ABI v{abi}, {paths} read-only paths); {why}, so system calls are not limited"
        ),
        (Err(s), Err(l)) => log::warn!(
            "sandbox: off: {s}; {l}; running without it (--no-sandbox silences this line)"
        ),
    }
}

/// What `--check` prints after `sandbox = `.
pub fn describe_check(config: &Config) -> String {
    if !config.sandbox {
        return "off (--no-sandbox)".into();
    }
    let (seccomp, landlock) = os::kernel_support();
    let n = os::allowed().len() + os::CHECKED.len();
    format!(
        "on ({}; {})",
        if seccomp {
            format!("seccomp allow-list of {n} calls")
        } else {
            "no seccomp filters on this kernel".into()
        },
        match landlock {
            Ok(abi) => format!("landlock ABI v{abi}, read-only paths"),
            Err(why) => why,
        }
    )
}

/// What the test hook asks for, read once at start (before the sandbox, which does not
/// stop reading the environment, but keeps it in one place).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Probe {
    exec: bool,
    shadow: bool,
}

impl Probe {
    pub(crate) fn from_env() -> Probe {
        let v = std::env::var(PROBE_ENV).unwrap_or_default();
        let has = |w: &str| v.split(',').any(|p| p.trim() == w);
        Probe {
            exec: has("exec"),
            shadow: has("shadow"),
        }
    }

    /// Tries the forbidden calls asked for and logs what happened (one line each).
    pub(crate) fn run(self) {
        if self.exec {
            let e = os::try_execve();
            if e.raw_os_error() == Some(libc::EPERM) {
                log::info!("sandbox probe: execve refused: {e}");
            } else {
                log::warn!("sandbox probe: execve not refused: {e}");
            }
        }
        if self.shadow {
            match std::fs::File::open("/etc/shadow") {
                Ok(f) => {
                    drop(f);
                    log::warn!("sandbox probe: /etc/shadow opened (not refused)");
                }
                Err(e) => log::info!("sandbox probe: opening /etc/shadow refused: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_resolv_conf_adds_its_target_and_only_a_directory_of_its_own() {
        let p = |s: &str| PathBuf::from(s);
        assert!(resolv_conf_target(&p("/etc/resolv.conf")).is_empty());
        assert_eq!(
            resolv_conf_target(&p("/tmp/resolv.conf.d/resolv.conf.auto")),
            vec![
                p("/tmp/resolv.conf.d/resolv.conf.auto"),
                p("/tmp/resolv.conf.d")
            ]
        );
        assert_eq!(
            resolv_conf_target(&p("/tmp/resolv.conf")),
            vec![p("/tmp/resolv.conf")]
        );
    }
}
