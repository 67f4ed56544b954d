//! Client tokens and access-token files.
//!
//! Without a client token an access token is single use: the first handshake burns it
//! and every reconnect is refused (protocol.md §1.13). So when the user gives none, the
//! proxy makes a random UUID-v4 client token per process (or keeps one in
//! `--client-token-file` across restarts) and sends it on every attempt. Token values
//! never reach a log line here or anywhere else.

use crate::config::{read_token_file, Secret};
use std::io::{Read, Write};
use std::path::Path;

/// A random UUID v4 (RFC 9562) from the OS random source: 36 characters of hex digits
/// and dashes, which the service's client-token rule accepts.
pub(crate) fn uuid_v4() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Whether `t` satisfies the service's client-token rule `[A-Za-z0-9-]{32,128}`.
pub(crate) fn valid_client_token(t: &str) -> bool {
    (32..=128).contains(&t.len()) && t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Where the client token of this process comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientTokenSource {
    Given,
    File,
    Stored,
    Generated,
}

/// Decides the client token: the one given, else the one in `file` (made and stored
/// there with mode 0600 if the file does not exist), else a fresh one for this process.
pub(crate) fn client_token(
    given: Option<&Secret>,
    file: Option<&Path>,
) -> Result<(Secret, ClientTokenSource), String> {
    if let Some(t) = given {
        return Ok((t.clone(), ClientTokenSource::Given));
    }
    let Some(path) = file else {
        let t = uuid_v4().map_err(|e| format!("cannot make a client token: {e}"))?;
        return Ok((Secret::new(t), ClientTokenSource::Generated));
    };
    if path.exists() {
        let t = read_token_file(path).map_err(|e| format!("--client-token-file: {e}"))?;
        if !valid_client_token(&t) {
            return Err(format!(
                "--client-token-file: {} does not hold 32-128 characters of A-Z a-z 0-9 -; \
                 delete it and a new token is made",
                path.display()
            ));
        }
        return Ok((Secret::new(t), ClientTokenSource::File));
    }
    let t = uuid_v4().map_err(|e| format!("cannot make a client token: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(path)
        .map_err(|e| {
            format!(
                "--client-token-file: cannot create {}: {e}; check the directory",
                path.display()
            )
        })?;
    f.write_all(format!("{t}\n").as_bytes())
        .map_err(|e| format!("--client-token-file: cannot write {}: {e}", path.display()))?;
    Ok((Secret::new(t), ClientTokenSource::Stored))
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn uuids_are_v4_valid_client_tokens_and_differ() {
        let a = uuid_v4().unwrap();
        let b = uuid_v4().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]), "{a}");
        assert!(valid_client_token(&a));
    }

    #[test]
    fn client_token_rule() {
        assert!(!valid_client_token("short"));
        assert!(!valid_client_token(&"a".repeat(129)));
        assert!(!valid_client_token(&format!("{}_", "a".repeat(40))));
        assert!(valid_client_token(&"a-".repeat(16)));
    }

    #[test]
    fn file_is_made_once_with_mode_0600_then_reused() {
        let dir = std::env::temp_dir().join(format!("lp-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("client-token");
        let (t1, s1) = client_token(None, Some(&path)).unwrap();
        assert_eq!(s1, ClientTokenSource::Stored);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (t2, s2) = client_token(None, Some(&path)).unwrap();
        assert_eq!(s2, ClientTokenSource::File);
        assert_eq!(t1, t2);
        std::fs::write(&path, "not a token\n").unwrap();
        assert!(client_token(None, Some(&path))
            .unwrap_err()
            .contains("delete it"));
        let given = Secret::new("x".repeat(40));
        assert_eq!(
            client_token(Some(&given), Some(&path)).unwrap(),
            (given, ClientTokenSource::Given)
        );
        let (_, s) = client_token(None, None).unwrap();
        assert_eq!(s, ClientTokenSource::Generated);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
