//! Which CA certificates verify the tunneling service, on machines that may have none.
//!
//! A vendored OpenSSL does not know where a distribution keeps its certificates, and many
//! routers keep none at all. [`choose`] looks, in order, at `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, the usual hashed directories ([`USUAL_DIRS`]) and the usual bundle
//! files ([`USUAL_FILES`], OpenWrt's `ca-bundle` among them). When none of them holds a
//! certificate, the Amazon root CAs built into the binary ([`builtin_roots`]) are the
//! store. `--capath` adds to whatever was chosen (see `tunnel::connect::tls_connector`).
//!
//! A hashed directory is preferred to a bundle file: OpenSSL reads a hashed directory one
//! certificate at a time when a handshake needs it, while a bundle is parsed whole at
//! start (about 1.7 MB of heap for Debian's 140 certificates). So a bundle is only loaded
//! when it was asked for with `SSL_CERT_FILE` or when no directory holds certificates.
//!
//! [`Choice::set_env`] hands the choice to OpenSSL through `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`, which its default paths follow (so the system bundle is not loaded
//! first); it must run before any thread is spawned.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Hashed certificate directories, in the order tried (Debian/OpenWrt/Alpine, RHEL).
pub(crate) const USUAL_DIRS: &[&str] = &["/etc/ssl/certs", "/etc/pki/tls/certs"];

/// Certificate bundles, in the order tried.
pub(crate) const USUAL_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, OpenWrt's ca-bundle, BusyBox images
    "/etc/ssl/cert.pem",                  // Alpine, OpenWrt (link to the bundle)
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
];

/// The Amazon root CAs 1-4 and Starfield Services Root G2 (the roots of the tunneling
/// service's certificates), from Debian's ca-certificates.
const AMAZON_ROOTS_PEM: &[u8] = include_bytes!("amazon-roots.pem");

/// The trust store the proxy will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// A bundle loaded whole at start.
    pub file: Option<PathBuf>,
    /// Hashed directories, read on demand.
    pub dirs: Vec<PathBuf>,
    /// No system store found: the built-in Amazon roots.
    pub builtin: bool,
    /// Places that were named by the environment but hold no certificate (for a warning).
    pub ignored: Vec<String>,
}

impl Choice {
    /// One line for the log and `--check`.
    pub fn describe(&self) -> String {
        if self.builtin {
            // Short enough for an 80-column console; README says where it looked.
            return format!(
                "the {} Amazon root CAs built into the binary (no system CAs)",
                builtin_roots().map(|r| r.len()).unwrap_or(0),
            );
        }
        let mut parts = Vec::new();
        if let Some(f) = &self.file {
            parts.push(format!("{} (bundle)", f.display()));
        }
        for d in &self.dirs {
            parts.push(format!(
                "{} (hashed directory, read on demand)",
                d.display()
            ));
        }
        parts.join(" + ")
    }

    /// Makes OpenSSL's default paths exactly this store: the chosen bundle or none
    /// (`/dev/null`), the chosen directories or none. Call it on the main thread before
    /// any other thread exists (it sets environment variables), and before the TLS
    /// connector is built (which reads them).
    pub(crate) fn set_env(&self) {
        let file = self
            .file
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev/null"));
        std::env::set_var("SSL_CERT_FILE", file);
        if self.dirs.is_empty() {
            std::env::set_var("SSL_CERT_DIR", "/dev/null");
        } else {
            let joined: Vec<OsString> = self.dirs.iter().map(|d| d.clone().into()).collect();
            std::env::set_var("SSL_CERT_DIR", join_paths(&joined));
        }
    }

    /// Adds the built-in roots to `store` when they are the choice.
    pub(crate) fn add_builtin(
        &self,
        store: &mut openssl::x509::store::X509StoreBuilderRef,
    ) -> Result<(), String> {
        if self.builtin {
            for cert in builtin_roots()? {
                store
                    .add_cert(cert)
                    .map_err(|e| format!("the built-in root CAs cannot be used: {e}"))?;
            }
        }
        Ok(())
    }
}

fn join_paths(parts: &[OsString]) -> OsString {
    let mut out = OsString::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(":");
        }
        out.push(p);
    }
    out
}

/// Parses the built-in roots (five certificates).
pub(crate) fn builtin_roots() -> Result<Vec<openssl::x509::X509>, String> {
    openssl::x509::X509::stack_from_pem(AMAZON_ROOTS_PEM)
        .map_err(|e| format!("the built-in root CAs do not parse: {e}"))
}

/// Chooses the store from the environment (`SSL_CERT_FILE`, `SSL_CERT_DIR`) and the
/// usual places; the places are parameters so tests can name empty ones.
pub(crate) fn choose(
    env_file: Option<OsString>,
    env_dir: Option<OsString>,
    usual_dirs: &[&str],
    usual_files: &[&str],
) -> Choice {
    let mut choice = Choice {
        file: None,
        dirs: Vec::new(),
        builtin: false,
        ignored: Vec::new(),
    };
    if let Some(f) = env_file.filter(|f| !f.is_empty()) {
        let f = PathBuf::from(f);
        if holds_certificates(&f) {
            choice.file = Some(f);
        } else {
            choice
                .ignored
                .push(format!("SSL_CERT_FILE={}", f.display()));
        }
    }
    if let Some(list) = env_dir.filter(|d| !d.is_empty()) {
        for d in std::env::split_paths(&list) {
            if is_hashed_dir(&d) {
                choice.dirs.push(d);
            } else {
                choice.ignored.push(format!("SSL_CERT_DIR={}", d.display()));
            }
        }
    }
    for d in usual_dirs.iter().map(PathBuf::from) {
        if !choice.dirs.contains(&d) && is_hashed_dir(&d) {
            choice.dirs.push(d);
        }
    }
    if choice.file.is_none() && choice.dirs.is_empty() {
        choice.file = usual_files
            .iter()
            .map(PathBuf::from)
            .find(|f| holds_certificates(f));
    }
    choice.builtin = choice.file.is_none() && choice.dirs.is_empty();
    choice
}

/// The choice for this process: the real environment and the usual places.
pub fn choose_here() -> Choice {
    choose(
        std::env::var_os("SSL_CERT_FILE"),
        std::env::var_os("SSL_CERT_DIR"),
        USUAL_DIRS,
        USUAL_FILES,
    )
}

/// A readable file with at least one PEM certificate in it.
fn holds_certificates(path: &Path) -> bool {
    std::fs::read(path)
        .map(|b| b.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"))
        .unwrap_or(false)
}

/// A directory OpenSSL can look certificates up in: at least one `hhhhhhhh.N` entry.
fn is_hashed_dir(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            return false;
        };
        let Some((hash, n)) = name.split_once('.') else {
            return false;
        };
        hash.len() == 8
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && e.path().is_file()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir()
                .join(format!("localproxy-trust-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn s(&self, rel: &str) -> String {
            self.0.join(rel).to_str().unwrap().to_string()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn the_builtin_roots_parse_and_are_the_amazon_ones() {
        let roots = openssl::x509::X509::stack_from_pem(AMAZON_ROOTS_PEM).unwrap();
        let names: Vec<String> = roots
            .iter()
            .map(|c| {
                let cn = c
                    .subject_name()
                    .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                    .next()
                    .unwrap();
                cn.data().to_string().unwrap()
            })
            .collect();
        assert_eq!(
            names,
            [
                "Amazon Root CA 1",
                "Amazon Root CA 2",
                "Amazon Root CA 3",
                "Amazon Root CA 4",
                "Starfield Services Root Certificate Authority - G2"
            ]
        );
        assert_eq!(builtin_roots().unwrap().len(), 5);
    }

    #[test]
    fn empty_places_everywhere_choose_the_builtin_roots() {
        let t = Scratch::new("empty");
        std::fs::write(t.0.join("empty.pem"), b"").unwrap();
        std::fs::create_dir(t.0.join("emptydir")).unwrap();
        let c = choose(
            os(&t.s("empty.pem")),
            os(&t.s("emptydir")),
            &[&t.s("no-such-dir")],
            &[&t.s("no-such-file.crt")],
        );
        assert!(c.builtin);
        assert_eq!(c.file, None);
        assert!(c.dirs.is_empty());
        assert_eq!(c.ignored.len(), 2, "{:?}", c.ignored);
        assert!(c
            .describe()
            .starts_with("the 5 Amazon root CAs built into the binary"));
        // Unset variables behave like empty places.
        assert!(choose(None, None, &[], &[]).builtin);
    }

    #[test]
    fn a_hashed_directory_wins_over_a_bundle_file() {
        let t = Scratch::new("hashed");
        std::fs::create_dir(t.0.join("certs")).unwrap();
        std::fs::write(t.0.join("certs/5ad8a5d6.0"), AMAZON_ROOTS_PEM).unwrap();
        std::fs::write(t.0.join("bundle.crt"), AMAZON_ROOTS_PEM).unwrap();
        let c = choose(None, None, &[&t.s("certs")], &[&t.s("bundle.crt")]);
        assert_eq!(c.dirs, [t.0.join("certs")]);
        assert_eq!(c.file, None, "the bundle must not be loaded as well");
        assert!(!c.builtin);
        assert!(c.describe().contains("hashed directory, read on demand"));
    }

    #[test]
    fn a_bundle_is_used_when_no_directory_is_hashed() {
        let t = Scratch::new("bundle");
        std::fs::create_dir(t.0.join("certs")).unwrap();
        // A directory of plain names cannot be looked up by OpenSSL.
        std::fs::write(t.0.join("certs/amazon.pem"), AMAZON_ROOTS_PEM).unwrap();
        std::fs::write(t.0.join("garbage.crt"), b"not a certificate").unwrap();
        std::fs::write(t.0.join("ca-bundle.crt"), AMAZON_ROOTS_PEM).unwrap();
        let c = choose(
            None,
            None,
            &[&t.s("certs")],
            &[
                &t.s("missing.crt"),
                &t.s("garbage.crt"),
                &t.s("ca-bundle.crt"),
            ],
        );
        assert_eq!(c.file, Some(t.0.join("ca-bundle.crt")));
        assert!(c.dirs.is_empty());
        assert!(!c.builtin);
    }

    #[test]
    fn the_environment_comes_first_and_adds_to_the_usual_directories() {
        let t = Scratch::new("env");
        for d in ["a", "b", "usual"] {
            std::fs::create_dir(t.0.join(d)).unwrap();
            std::fs::write(t.0.join(d).join("0123abcd.1"), AMAZON_ROOTS_PEM).unwrap();
        }
        std::fs::write(t.0.join("mine.pem"), AMAZON_ROOTS_PEM).unwrap();
        let dirs = std::env::join_paths([t.0.join("a"), t.0.join("b")]).unwrap();
        let c = choose(
            os(&t.s("mine.pem")),
            Some(dirs),
            &[&t.s("usual"), &t.s("a")],
            &[],
        );
        assert_eq!(c.file, Some(t.0.join("mine.pem")));
        assert_eq!(c.dirs, [t.0.join("a"), t.0.join("b"), t.0.join("usual")]);
        assert!(c.ignored.is_empty());
    }
}
