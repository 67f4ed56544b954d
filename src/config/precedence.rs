//! Precedence: the command line, the `--config` file and the environment become one
//! value per option, each with where it came from ([`Origin`]), so every later error
//! names the place the user must edit.
//!
//! CLI > `--config` file > environment, key by key, except that `-e` and `-r` travel
//! together: the first source that names either decides the endpoint, so an exported
//! `AWSIOT_TUNNEL_ENDPOINT` does not clash with a `-r` on the command line. Values stay
//! text here: checking them and building the `Config` is `validate`'s job. Pure: the
//! environment is a closure and the file is text, so tests inject everything.

use super::error::{ConfigError, Problem};
use super::files::{parse_config_file, ConfigSource};
use crate::cli::{self, Args, OptId, OptSpec, OPTIONS};
use std::fmt;

/// Where a value came from; error messages name it so the user edits the right place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Cli,
    File {
        path: String,
        line: usize,
    },
    Env(&'static str),
    /// From a `--notification` document (its label, e.g. `--notification /run/n.json`).
    Notification(String),
}

/// One option's value after precedence.
#[derive(Clone)]
pub(crate) struct Value {
    pub(crate) text: String,
    pub(crate) origin: Origin,
    pub(crate) spec: &'static OptSpec,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = matches!(self.spec.id, OptId::AccessToken | OptId::ClientToken);
        let text = if secret { "***" } else { self.text.as_str() };
        write!(f, "{}={:?} from {:?}", self.spec.long, text, self.origin)
    }
}

impl Value {
    /// How the user wrote it: `--region`, `FILE line 3: region` or `AWSIOT_TUNNEL_REGION`.
    pub(crate) fn subject(&self) -> String {
        match &self.origin {
            Origin::Cli => cli::label(self.spec),
            Origin::File { path, line } => format!("{path} line {line}: {}", self.spec.long),
            Origin::Env(name) => name.to_string(),
            Origin::Notification(label) => label.clone(),
        }
    }

    /// A rule's problem as an error naming this value's place.
    pub(crate) fn error(&self, (problem, fix): Problem) -> ConfigError {
        ConfigError::new(self.subject(), problem, fix)
    }
}

/// The options after precedence, not yet validated.
#[derive(Debug)]
pub(crate) struct Resolved {
    vals: Vec<Value>,
    /// Warnings found so far (the logger is not up yet; `main` logs them).
    pub(crate) warnings: Vec<String>,
}

/// Applies CLI > `--config` file > environment. `env` looks a variable up; an empty
/// value counts as unset (`VAR= localproxy …` is how shells unset one for a command).
pub(crate) fn resolve(
    args: &Args,
    config_file: Option<ConfigSource<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    let entries = match config_file {
        Some(src) => parse_config_file(src.name, src.text.as_bytes())?,
        None => Vec::new(),
    };
    let file_name = config_file.map_or("", |c| c.name);
    let layer = |level: usize, spec: &'static OptSpec| -> Option<Value> {
        let (text, origin) = match level {
            0 => (args.value(spec.id)?.to_string(), Origin::Cli),
            1 => {
                let e = entries.iter().find(|e| e.spec.id == spec.id)?;
                let origin = Origin::File {
                    path: file_name.to_string(),
                    line: e.line,
                };
                (e.value.clone(), origin)
            }
            _ => {
                let name = spec.env?;
                let v = env(name).filter(|v| !v.is_empty())?;
                (v, Origin::Env(name))
            }
        };
        Some(Value { text, origin, spec })
    };
    let mut vals = Vec::new();
    for spec in OPTIONS.iter().filter(|o| o.in_config_file) {
        if matches!(spec.id, OptId::ProxyEndpoint | OptId::Region) {
            continue;
        }
        if let Some(v) = (0..3).find_map(|level| layer(level, spec)) {
            vals.push(v);
        }
    }
    let (e, r) = (cli::spec(OptId::ProxyEndpoint), cli::spec(OptId::Region));
    for level in 0..3 {
        let found: Vec<Value> = [layer(level, e), layer(level, r)]
            .into_iter()
            .flatten()
            .collect();
        if !found.is_empty() {
            vals.extend(found);
            break;
        }
    }
    let mut warnings = Vec::new();
    if args.access_token.is_some() {
        warnings.push(
            "the access token given with -t is visible to every user in process listings; \
             set AWSIOT_TUNNEL_ACCESS_TOKEN or put access-token in a --config file instead"
                .to_string(),
        );
    }
    Ok(Resolved { vals, warnings })
}

impl Resolved {
    /// The value of an option after precedence.
    pub(crate) fn get(&self, id: OptId) -> Option<&Value> {
        self.vals.iter().find(|v| v.spec.id == id)
    }

    /// Puts `v` in place of the option's value (`--notification` uses it).
    pub(crate) fn set(&mut self, v: Value) {
        self.vals.retain(|old| old.spec.id != v.spec.id);
        self.vals.push(v);
    }

    /// Whether `-s` or `-d` gives the mapping (else `--config-dir` is consulted).
    pub(crate) fn has_mapping(&self) -> bool {
        self.get(OptId::SourceListenPort).is_some() || self.get(OptId::DestinationApp).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};

    const FILE_TOKEN: &str = "FILETOKEN0123456789";
    const ENV_TOKEN: &str = "ENVTOKEN0123456789";

    fn full_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", ENV_TOKEN),
            (
                "AWSIOT_TUNNEL_CLIENT_TOKEN",
                "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            ),
            ("AWSIOT_TUNNEL_REGION", "eu-west-1"),
        ]
    }

    /// Resolves the command line with the given `lp.conf` text and environment.
    fn resolved(cli: &[&str], file: Option<&str>, env: &[(&str, &str)]) -> Resolved {
        let args = match parse(cli.iter().copied()) {
            Ok(Command::Run(a)) => a,
            other => panic!("{other:?}"),
        };
        let env_fn = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        let src = file.map(|text| ConfigSource {
            name: "lp.conf",
            text,
        });
        resolve(&args, src, &env_fn).unwrap()
    }

    /// The text an option resolved to and where it came from.
    fn got(r: &Resolved, id: OptId) -> Option<(&str, &Origin)> {
        r.get(id).map(|v| (v.text.as_str(), &v.origin))
    }

    fn text(r: &Resolved, id: OptId) -> Option<&str> {
        r.get(id).map(|v| v.text.as_str())
    }

    fn line(line: usize) -> Origin {
        Origin::File {
            path: "lp.conf".into(),
            line,
        }
    }

    #[test]
    fn precedence_cli_over_file() {
        let file = "access-token = FILETOKEN0123456789\nregion = ap-south-1\nsource-listen-port = 7000\nverbose = 2\n";
        let r = resolved(
            &["-t", "CLITOKEN", "-r", "us-east-1", "-s", "5555", "-v", "5"],
            Some(file),
            &[],
        );
        assert_eq!(
            got(&r, OptId::AccessToken),
            Some(("CLITOKEN", &Origin::Cli))
        );
        assert_eq!(got(&r, OptId::Region), Some(("us-east-1", &Origin::Cli)));
        assert_eq!(
            got(&r, OptId::SourceListenPort),
            Some(("5555", &Origin::Cli))
        );
        assert_eq!(got(&r, OptId::Verbose), Some(("5", &Origin::Cli)));
        // -e on the CLI replaces the file's region as a whole (no "both given").
        let r = resolved(&["-e", "cli.example.com"], Some(file), &[]);
        assert_eq!(text(&r, OptId::ProxyEndpoint), Some("cli.example.com"));
        assert_eq!(text(&r, OptId::Region), None);
        assert_eq!(got(&r, OptId::AccessToken), Some((FILE_TOKEN, &line(1))));
        assert_eq!(got(&r, OptId::Verbose), Some(("2", &line(4))));
    }

    #[test]
    fn precedence_file_over_env() {
        let file = "access-token = FILETOKEN0123456789\nclient-token = ffffffffffffffffffffffffffffffffffff\nregion = ap-south-1\ns\
                    ource-listen-port = 7000\n";
        let r = resolved(&[], Some(file), &full_env());
        assert_eq!(got(&r, OptId::AccessToken), Some((FILE_TOKEN, &line(1))));
        assert_eq!(
            text(&r, OptId::ClientToken),
            Some("ffffffffffffffffffffffffffffffffffff")
        );
        assert_eq!(got(&r, OptId::Region), Some(("ap-south-1", &line(3))));
        assert_eq!(got(&r, OptId::SourceListenPort), Some(("7000", &line(4))));
        // The file's endpoint beats the environment's region.
        let r = resolved(
            &["-s", "1"],
            Some("proxy-endpoint = file.example.com"),
            &full_env(),
        );
        assert_eq!(text(&r, OptId::ProxyEndpoint), Some("file.example.com"));
        assert_eq!(text(&r, OptId::Region), None);
    }

    #[test]
    fn precedence_cli_over_env() {
        let r = resolved(
            &[
                "-t",
                "CLITOKEN",
                "-i",
                "cccccccccccccccccccccccccccccccccccc",
                "-r",
                "us-west-2",
                "-s",
                "1",
            ],
            None,
            &full_env(),
        );
        assert_eq!(text(&r, OptId::AccessToken), Some("CLITOKEN"));
        assert_eq!(
            text(&r, OptId::ClientToken),
            Some("cccccccccccccccccccccccccccccccccccc")
        );
        assert_eq!(got(&r, OptId::Region), Some(("us-west-2", &Origin::Cli)));
        let mut env = full_env();
        env.push(("AWSIOT_TUNNEL_ENDPOINT", "env.example.com"));
        env.retain(|(k, _)| *k != "AWSIOT_TUNNEL_REGION");
        let r = resolved(&["-r", "us-west-2", "-s", "1"], None, &env);
        assert_eq!(got(&r, OptId::Region), Some(("us-west-2", &Origin::Cli)));
        assert_eq!(text(&r, OptId::ProxyEndpoint), None);
        let env_token = Origin::Env("AWSIOT_TUNNEL_ACCESS_TOKEN");
        assert_eq!(got(&r, OptId::AccessToken), Some((ENV_TOKEN, &env_token)));
    }

    #[test]
    fn subjects_name_the_place_and_debug_hides_tokens() {
        let r = resolved(
            &["-s", "1"],
            Some("\nregion = ap-south-1"),
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", ENV_TOKEN)],
        );
        let subject = |id| r.get(id).map(Value::subject);
        assert_eq!(
            subject(OptId::SourceListenPort).as_deref(),
            Some("--source-listen-port")
        );
        assert_eq!(
            subject(OptId::Region).as_deref(),
            Some("lp.conf line 2: region")
        );
        assert_eq!(
            subject(OptId::AccessToken).as_deref(),
            Some("AWSIOT_TUNNEL_ACCESS_TOKEN")
        );
        assert!(!format!("{r:?}").contains(ENV_TOKEN), "{r:?}");
    }
}
