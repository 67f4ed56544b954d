//! The only file I/O of the configuration: [`load`] reads the `--config` file,
//! `--notification`, `--settings-json`, the access-token file and `--config-dir`, then
//! hands the texts to the pure steps (precedence, validation) and returns the
//! [`Config`] with the warnings to log. [`read_token_file`] is also what the tunnel
//! thread calls to re-read `--access-token-file` at every connection attempt.
//!
//! Every size limit on what is read lives here; every rule about what the text means
//! lives in the pure files. No network, no sockets: `--check` runs exactly this and
//! prints the result.

use super::effective::Config;
use super::error::{problem, quoted, ConfigError};
use super::files::{parse_mapping_file, ConfigSource};
use super::from_notification::{apply, finish};
use super::notification::{label, parse, Notification, MAX_DOCUMENT};
use super::precedence::{resolve, Origin};
use super::rules::check_path;
use super::settings::Settings;
use crate::cli::{Args, OptId};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest file read as `--config`, `--settings-json` or a `--config-dir` file: all of
/// them are a few hundred bytes; a larger one is a wrong path, not a configuration.
const MAX_FILE: u64 = 1 << 20;

/// The configuration and the warnings to log once the logger is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Whether group or others may read a file (a token in it is then not private).
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

/// Reads a token file: the first line, whitespace trimmed. Errors are one phrase.
pub(crate) fn read_token_file(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return Err(format!(
            "{} is not a regular file of at most 64 KiB",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Reads a small text file for an option; errors name the option.
fn read_text(path: &Path, subject: &str) -> Result<String, ConfigError> {
    let cannot = |e: std::io::Error| {
        ConfigError::new(
            subject,
            format!("cannot read {}: {e}", path.display()),
            "check the path and its permissions",
        )
    };
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(ConfigError::new(
            subject,
            format!("{} is not a regular file of at most 1 MiB", path.display()),
            "give the path of the file itself",
        ));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    String::from_utf8(bytes).map_err(|_| {
        ConfigError::new(
            subject,
            format!("{} is not valid UTF-8 text", path.display()),
            "save the file as plain text",
        )
    })
}

/// Everything with I/O: reads the `--config` file, `--settings-json` and `--config-dir`
/// (default `<cwd>/config` if it exists), then validates. `main` calls this after
/// `--help`, `--version` and `--export-default-settings` are answered.
pub fn load(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: Option<&Path>,
) -> Result<Loaded, ConfigError> {
    let file_text;
    let file_name;
    let source = match &args.config {
        Some(path) => {
            file_text = read_text(path, "--config")?;
            file_name = path.display().to_string();
            Some(ConfigSource {
                name: &file_name,
                text: &file_text,
            })
        }
        None => None,
    };
    let mut resolved = resolve(args, source, env)?;
    let notification = match &args.notification {
        Some(path) => {
            let n = read_notification(path)?;
            apply(&mut resolved, &n, path)?;
            if path != "-" && readable_by_others(Path::new(path)) {
                resolved.warnings.push(format!(
                    "{} holds the access token and other users can read it; chmod 600 it",
                    quoted(path)
                ));
            }
            Some((n, path))
        }
        None => None,
    };
    if let (Some(path), Some(t)) = (&args.config, resolved.get(OptId::AccessToken)) {
        if matches!(t.origin, Origin::File { .. }) && readable_by_others(path) {
            resolved.warnings.push(format!(
                "{} holds the access token and other users can read it; chmod 600 it",
                path.display()
            ));
        }
    }

    let settings = match resolved.get(OptId::SettingsJson) {
        Some(v) => {
            check_path(&v.text).map_err(|p| v.error(p))?;
            let subject = format!("{} {}", v.subject(), v.text);
            let text = read_text(Path::new(&v.text), &v.subject())?;
            let (settings, warnings) =
                Settings::from_json(&text).map_err(|e| e.within(&subject))?;
            resolved.warnings.extend(warnings);
            settings
        }
        None => Settings::default(),
    };

    if let Some(c) = resolved.get(OptId::Capath) {
        check_path(&c.text).map_err(|p| c.error(p))?;
        if !Path::new(&c.text).is_dir() {
            return Err(c.error(problem(
                format!("{} is not a directory", quoted(&c.text)),
                "give a directory of CA certificates in OpenSSL hashed form (c_rehash)",
            )));
        }
    }

    let mut dir_mappings = Vec::new();
    let explicit_dir = resolved.get(OptId::ConfigDir).cloned();
    if resolved.has_mapping() {
        if let Some(d) = explicit_dir {
            resolved.warnings.push(format!(
                "{}: ignored because -s or -d gives the mapping",
                d.subject()
            ));
        }
    } else {
        let dir = match &explicit_dir {
            Some(d) => {
                check_path(&d.text).map_err(|p| d.error(p))?;
                if !Path::new(&d.text).is_dir() {
                    return Err(d.error(problem(
                        format!("{} is not a directory", quoted(&d.text)),
                        "give a directory of 'ServiceID = value' files",
                    )));
                }
                Some(PathBuf::from(&d.text))
            }
            None => cwd.map(|c| c.join("config")).filter(|d| d.is_dir()),
        };
        if let Some(dir) = dir {
            let warnings = &mut resolved.warnings;
            read_config_dir(&dir, &mut dir_mappings, warnings);
        }
    }
    let (mut config, mut warnings) =
        resolved.into_config(settings, dir_mappings, &read_token_file)?;
    if let Some((n, path)) = notification {
        finish(&mut config, &n, path, &mut warnings)?;
    }
    Ok(Loaded { config, warnings })
}

/// Reads and checks the document at `path` (`-`: stdin). Errors start with
/// `--notification PATH`.
fn read_notification(path: &str) -> Result<Notification, ConfigError> {
    let subject = label(path);
    check_path(path).map_err(|(p, f)| ConfigError::new(&subject, p, f))?;
    let cannot = |e: std::io::Error| {
        ConfigError::new(
            &subject,
            format!("cannot be read: {e}"),
            "check the path and its permissions",
        )
    };
    // One byte more than allowed tells "at the limit" from "over it" without reading a
    // huge file whole.
    let limit = MAX_DOCUMENT as u64 + 1;
    let mut doc = Vec::new();
    if path == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut doc)
            .map_err(cannot)?;
    } else {
        let f = std::fs::File::open(path).map_err(cannot)?;
        if f.metadata().map_err(cannot)?.is_dir() {
            return Err(ConfigError::new(
                &subject,
                "is a directory",
                "give the path of the notification file",
            ));
        }
        f.take(limit).read_to_end(&mut doc).map_err(cannot)?;
    }
    parse(&doc).map_err(|e| e.within(&subject))
}

/// Reads every regular file under `dir` (sorted, so "first file wins" is repeatable) as
/// `ServiceID = value` lines. Unreadable or unparsable files are skipped with a warning;
/// symlinked directories are not followed (no loops).
fn read_config_dir(dir: &Path, out: &mut Vec<(String, String)>, warnings: &mut Vec<String>) {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<(String, String)>, warnings: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(e) => {
                warnings.push(format!("--config-dir: cannot read {}: {e}", dir.display()));
                return;
            }
        };
        entries.sort();
        for path in entries {
            let Ok(link) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if link.is_dir() {
                if depth < 8 {
                    walk(&path, depth + 1, out, warnings);
                }
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() <= MAX_FILE => {}
                _ => continue,
            }
            let parsed = std::fs::File::open(&path)
                .map_err(|e| format!("cannot be read: {e}"))
                .and_then(|f| parse_mapping_file(std::io::BufReader::new(f)));
            match parsed {
                Ok(items) => {
                    for (id, v) in items {
                        if out.iter().any(|(known, _)| *known == id) {
                            warnings.push(format!(
                                "--config-dir: {id} in {} ignored: an earlier file maps it",
                                path.display()
                            ));
                        } else {
                            out.push((id, v));
                        }
                    }
                }
                Err(p) => warnings.push(format!("--config-dir: skipping {}: {p}", path.display())),
            }
        }
    }
    walk(dir, 0, out, warnings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse as parse_cli, Command};
    use crate::config::notification::FIX_DOCUMENT;

    const TOKEN: &str = "AQGAAXiYSECRETTOKENTEXT0123456789abcdef";

    fn args(list: &[&str]) -> Args {
        match parse_cli(list.iter().copied()) {
            Ok(Command::Run(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    /// A valid notification document for the eu-west-1 tunnel with one service.
    fn good() -> String {
        format!(
            r#"{{"clientAccessToken": "{TOKEN}", "clientMode": "destination", "region": "eu-west-1", "services": ["SSH"]}}"#
        )
    }

    #[test]
    fn load_reads_files_and_the_default_config_dir() {
        let base = std::env::temp_dir().join(format!("lp-config-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("config/sub")).unwrap();
        std::fs::write(base.join("config/a"), "SSH = 3333\n").unwrap();
        std::fs::write(base.join("config/sub/b"), "WEB = 8080\nSSH = 1\n").unwrap();
        std::fs::write(base.join("config/zz-bad"), "not a mapping\n").unwrap();
        std::fs::write(
            base.join("lp.conf"),
            format!(
                "region = us-east-1\nmode = src\nsettings-json = {}\naccess-token = FILETOKEN\n",
                base.join("s.json").display()
            ),
        )
        .unwrap();
        let conf = base.join("lp.conf");
        let mode = |m| {
            std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(m))
                .unwrap()
        };
        mode(0o644);
        std::fs::write(
            base.join("s.json"),
            r#"{"tunneling":{"proxy":{"tcp":{"max_active_connections":"7"},"x":"1"}}}"#,
        )
        .unwrap();
        let mut a = args(&[]);
        a.config = Some(base.join("lp.conf"));
        let env = |k: &str| (k == "AWSIOT_TUNNEL_ACCESS_TOKEN").then(|| TOKEN.to_string());
        let l = load(&a, &env, Some(&base)).unwrap();
        assert_eq!(l.config.settings.tcp_max_active_connections, 7);
        assert_eq!(
            l.config.config_dir_mappings,
            vec![
                ("SSH".to_string(), "3333".to_string()),
                ("WEB".to_string(), "8080".to_string())
            ]
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("zz-bad")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("SSH in")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("tunneling.proxy.x")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("chmod 600")),
            "{:?}",
            l.warnings
        );
        mode(0o600);
        let l = load(&a, &env, Some(&base)).unwrap();
        assert!(
            !l.warnings.iter().any(|w| w.contains("chmod")),
            "{:?}",
            l.warnings
        );
        // A missing file, a bad settings file, a missing capath: one clear error each.
        a.config = Some(base.join("missing.conf"));
        assert!(load(&a, &env, None)
            .unwrap_err()
            .to_string()
            .starts_with("--config: cannot read"));
        std::fs::write(base.join("s.json"), "{").unwrap();
        let mut a = args(&["-r", "x", "-s", "1"]);
        a.settings_json = Some(base.join("s.json").display().to_string());
        let e = load(&a, &env, None).unwrap_err().to_string();
        assert!(
            e.starts_with("--settings-json ") && e.contains("not valid JSON"),
            "{e}"
        );
        let a = args(&["-r", "x", "-s", "1", "-c", "/nonexistent-dir"]);
        assert!(load(&a, &env, None)
            .unwrap_err()
            .to_string()
            .contains("is not a directory"));
        let a = args(&["-r", "x", "-m", "src", "--config-dir", "/nonexistent-dir"]);
        assert!(load(&a, &env, None)
            .unwrap_err()
            .to_string()
            .starts_with("--config-dir: /nonexistent-dir is not a directory"));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn read_from_a_file() {
        let dir = std::env::temp_dir().join(format!("lp-notification-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("n.json");
        std::fs::write(&p, good()).unwrap();
        let path = p.to_str().unwrap();
        assert_eq!(read_notification(path).unwrap().region, "eu-west-1");
        std::fs::write(&p, "x".repeat(MAX_DOCUMENT + 10)).unwrap();
        let e = read_notification(path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("--notification {path}: is larger than 64 KiB; {FIX_DOCUMENT}")
        );
        std::fs::write(&p, "[1]").unwrap();
        assert!(read_notification(path)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("--notification {path}: the top level")));
        std::fs::write(&p, "{").unwrap();
        assert!(read_notification(path)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("--notification {path}: line 1 column")));
        let e = read_notification(dir.join("missing").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
        let e = read_notification(dir.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert!(read_notification("")
            .unwrap_err()
            .to_string()
            .contains("not a usable path"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
