//! The two INI-like texts: a `--config` file (`name = value` lines, long option names as
//! keys) and one `--config-dir` file (`ServiceID = value` lines), each read from a
//! `BufRead` into entries with their line numbers.
//!
//! Only the syntax and the keys are checked here (a known option allowed in a file,
//! given once; a valid service id). Values stay text: `validate` checks them, with the
//! file's line in the message. No file is opened here (`load` does that), so tests pass
//! text.

use super::error::ConfigError;
use super::rules::check_service_id;
use crate::cli::{self, OptId, OptSpec};
use std::fmt;
use std::io::BufRead;

/// The text of a `--config` file and the name to quote in errors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConfigSource<'a> {
    pub(crate) name: &'a str,
    pub(crate) text: &'a str,
}

/// One `name = value` line of a `--config` file.
#[derive(Clone)]
pub(crate) struct FileEntry {
    pub(crate) spec: &'static OptSpec,
    pub(crate) value: String,
    pub(crate) line: usize,
}

impl fmt::Debug for FileEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = matches!(self.spec.id, OptId::AccessToken | OptId::ClientToken);
        let text = if secret { "***" } else { self.value.as_str() };
        write!(f, "line {}: {}={:?}", self.line, self.spec.long, text)
    }
}

/// Splits a line of the INI-like files: `#` starts a comment anywhere (as in Boost),
/// blank and `[section]` lines are skipped. `Ok(None)`: nothing on this line.
fn ini_line(raw: &str) -> Result<Option<(&str, &str)>, ()> {
    let line = raw.split('#').next().unwrap_or("").trim();
    if line.is_empty() || (line.starts_with('[') && line.ends_with(']')) {
        return Ok(None);
    }
    match line.split_once('=') {
        Some((k, v)) => Ok(Some((k.trim(), v.trim()))),
        None => Err(()),
    }
}

/// Parses a `--config` file: long option names without dashes as keys. Errors are
/// prefixed with `name line N`.
pub(crate) fn parse_config_file(
    name: &str,
    reader: impl BufRead,
) -> Result<Vec<FileEntry>, ConfigError> {
    let mut entries: Vec<FileEntry> = Vec::new();
    for (i, raw) in reader.split(b'\n').enumerate() {
        let line = i + 1;
        let at = format!("{name} line {line}");
        let raw = raw.map_err(|e| {
            ConfigError::new(
                name,
                format!("cannot be read: {e}"),
                "check the path and its permissions",
            )
        })?;
        let raw = String::from_utf8(raw).map_err(|_| {
            ConfigError::new(
                at.clone(),
                "is not valid UTF-8 text",
                "save the file as plain text",
            )
        })?;
        let Some((key, value)) = ini_line(&raw).map_err(|_| {
            ConfigError::new(
                at.clone(),
                "is not a 'name = value' line",
                "write one option per line, e.g. region = us-east-1",
            )
        })?
        else {
            continue;
        };
        let Some(spec) = cli::find_long(key) else {
            return Err(ConfigError::new(
                at,
                format!("unknown key '{}'", cli::shown_name(key)),
                "use a long option name without dashes, e.g. region or access-token",
            ));
        };
        if !spec.in_config_file {
            return Err(ConfigError::new(
                at,
                format!("'{key}' cannot be set in a config file"),
                format!("give --{key} on the command line"),
            ));
        }
        if let Some(first) = entries.iter().find(|e| e.spec.id == spec.id) {
            return Err(ConfigError::new(
                at,
                format!("'{key}' is given again (first on line {})", first.line),
                "keep one of the two lines",
            ));
        }
        entries.push(FileEntry {
            spec,
            value: value.to_string(),
            line,
        });
    }
    Ok(entries)
}

/// Parses one `--config-dir` file: `ServiceID = value` lines. The error text names the
/// line; the caller skips the file with a warning.
pub(crate) fn parse_mapping_file(reader: impl BufRead) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, raw) in reader.split(b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.map_err(|e| format!("cannot be read: {e}"))?;
        let raw = String::from_utf8(raw).map_err(|_| format!("line {line} is not UTF-8 text"))?;
        let Some((id, value)) =
            ini_line(&raw).map_err(|_| format!("line {line} is not a 'ServiceID = value' line"))?
        else {
            continue;
        };
        if id.is_empty() {
            return Err(format!("line {line} has no service id"));
        }
        check_service_id(id).map_err(|(p, _)| format!("line {line}: the service id {p}"))?;
        if value.is_empty() {
            return Err(format!("line {line} has no value"));
        }
        if !out.iter().any(|(known, _)| known == id) {
            out.push((id.to_string(), value.to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "AQGAAXiYSECRETTOKENTEXT0123456789abcdef";

    #[test]
    fn config_file_syntax() {
        let text = b"# comment\n\n  [section]\nregion = us-east-1   # trailing comment\n\
                     \tsource-listen-port=SSH=5555\nno-ssl-host-verify = true\nverbose = 6\n";
        let entries = parse_config_file("f", &text[..]).unwrap();
        let got: Vec<(&str, &str, usize)> = entries
            .iter()
            .map(|e| (e.spec.long, e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("region", "us-east-1", 4),
                ("source-listen-port", "SSH=5555", 5),
                ("no-ssl-host-verify", "true", 6),
                ("verbose", "6", 7)
            ]
        );
    }

    #[test]
    fn config_file_errors() {
        let e = |text: &str| {
            parse_config_file("lp.conf", text.as_bytes())
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            e("region = x\n\nregoin = y\n").unwrap(),
            "lp.conf line 3: unknown key 'regoin'; use a long option name without dashes, e.g. region or access-token"
        );
        assert!(e("region\n")
            .unwrap()
            .starts_with("lp.conf line 1: is not a 'name = value' line"));
        assert!(e("help = true")
            .unwrap()
            .contains("'help' cannot be set in a config file"));
        assert!(e("config = other.conf")
            .unwrap()
            .contains("cannot be set in a config file"));
        assert!(e("check = 1").unwrap().contains("cannot be set"));
        assert!(e("region = a\nregion = b")
            .unwrap()
            .starts_with("lp.conf line 2: 'region' is given again (first on line 1)"));
        assert!(e("--region = a")
            .unwrap()
            .contains("unknown key '--region'"));
        // A pasted token line is not echoed.
        let line = format!("{TOKEN}+/xyz==");
        let msg = e(&line).unwrap();
        assert!(!msg.contains("SECRET"), "{msg}");
        assert!(parse_config_file("f", &b"region = \xff\n"[..])
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }

    #[test]
    fn mapping_files() {
        let m = parse_mapping_file(
            &b"# services\n[x]\nSSH1 = 3333\nWEB=10.0.0.1:80 # web\nSSH1 = 9\n"[..],
        )
        .unwrap();
        assert_eq!(
            m,
            vec![
                ("SSH1".into(), "3333".into()),
                ("WEB".into(), "10.0.0.1:80".into())
            ]
        );
        assert!(parse_mapping_file(&b"SSH1\n"[..])
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_mapping_file(&b"S:1 = 2\n"[..]).is_err());
        assert!(parse_mapping_file(&b"S = \n"[..]).is_err());
        assert!(parse_mapping_file(&b" = 2\n"[..]).is_err());
    }
}
