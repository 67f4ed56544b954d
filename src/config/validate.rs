//! Validation: the resolved options, the settings and the `--config-dir` lines become
//! one [`Config`], or the first [`ConfigError`], whose text names the option (and where
//! its value came from), the problem and the fix, and never contains a token.
//!
//! Here live the rules that look at several options at once: one access token (option
//! or file), `-e` or `-r`, `-s` or `-d` against `--mode`, the bind address as the default
//! host of a bare destination port, `--config-dir` values checked for the mode. Each
//! single value goes through `rules`. Pure: the access-token file is read through the
//! function the caller passes (`load` passes `read_token_file`), so no file is opened
//! here.

use super::effective::Config;
use super::error::{problem, quoted, ConfigError};
use super::model::{
    ClientType, Endpoint, Mode, Secret, DEFAULT_ENDPOINT_PORT, DEFAULT_TARGET_HOST,
    DEFAULT_VERBOSITY,
};
use super::precedence::Resolved;
use super::rules::{
    check_access_token, check_client_token, check_path, check_region, parse_bind_address,
    parse_bool, parse_connect_mappings, parse_endpoint, parse_listen_mappings, parse_mode,
    parse_port, parse_target, parse_verbosity,
};
use super::settings::Settings;
use crate::cli::OptId;
use std::path::{Path, PathBuf};

impl Resolved {
    /// A flag's value: absent is false; from a file or the environment, true/false.
    fn flag(&self, id: OptId) -> Result<bool, ConfigError> {
        match self.get(id) {
            Some(k) => parse_bool(&k.text).ok_or_else(|| {
                k.error(problem(
                    format!("'{}' is not true or false", quoted(&k.text)),
                    "give true or false",
                ))
            }),
            None => Ok(false),
        }
    }

    /// Validates everything and builds the [`Config`]. `settings` come from
    /// `--settings-json` (already validated), `config_dir_mappings` from `--config-dir`;
    /// `read_token` reads the `--access-token-file` (its error is one phrase).
    pub(crate) fn into_config(
        mut self,
        settings: Settings,
        config_dir_mappings: Vec<(String, String)>,
        read_token: &dyn Fn(&Path) -> Result<String, String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = std::mem::take(&mut self.warnings);
        let missing_token = || {
            ConfigError::new(
                "--access-token",
                "no access token is given",
                "set AWSIOT_TUNNEL_ACCESS_TOKEN (safest), put access-token in a --config file, or give -t",
            )
        };
        let access_token_file = match self.get(OptId::AccessTokenFile) {
            Some(f) => {
                check_path(&f.text).map_err(|p| f.error(p))?;
                Some((PathBuf::from(&f.text), f.subject()))
            }
            None => None,
        };
        let access_token = match (self.get(OptId::AccessToken), &access_token_file) {
            (Some(t), Some((_, subject))) => {
                return Err(ConfigError::new(
                    format!("{} and {subject}", t.subject()),
                    "both are given",
                    "give the access token in one place: the file, or the option/environment",
                ))
            }
            (Some(token), None) => {
                check_access_token(&token.text).map_err(|p| token.error(p))?;
                Secret::new(token.text.clone())
            }
            (None, Some((path, subject))) => {
                let text = read_token(path).map_err(|e| {
                    ConfigError::new(subject.clone(), e, "write the access token into the file")
                })?;
                check_access_token(&text)
                    .map_err(|p| ConfigError::new(subject.clone(), p.0, p.1))?;
                Secret::new(text)
            }
            (None, None) => return Err(missing_token()),
        };
        let client_token_file = match self.get(OptId::ClientTokenFile) {
            Some(f) => {
                check_path(&f.text).map_err(|p| f.error(p))?;
                Some(PathBuf::from(&f.text))
            }
            None => None,
        };
        let user = match self.get(OptId::User) {
            Some(u) => {
                let ok = !u.text.is_empty()
                    && u.text.len() <= 64
                    && u.text.split(':').count() <= 2
                    && u.text.split(':').all(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    });
                if !ok {
                    return Err(u.error(problem(
                        format!("'{}' is not NAME or NAME:GROUP", quoted(&u.text)),
                        "give a user name, optionally with a group: --user nobody:nogroup",
                    )));
                }
                Some(u.text.clone())
            }
            None => None,
        };
        let require_non_root = self.flag(OptId::RequireNonRoot)?;
        let sandbox = !self.flag(OptId::NoSandbox)?;

        let client_token = match self.get(OptId::ClientToken) {
            Some(v) => {
                check_client_token(&v.text).map_err(|p| v.error(p))?;
                Some(Secret::new(v.text.clone()))
            }
            None => None,
        };

        let endpoint = match (self.get(OptId::ProxyEndpoint), self.get(OptId::Region)) {
            (Some(e), Some(r)) => {
                return Err(ConfigError::new(
                    format!("{} and {}", e.subject(), r.subject()),
                    "both are given",
                    "give either the region (-r) or the endpoint (-e), not both",
                ))
            }
            (Some(e), None) => parse_endpoint(&e.text).map_err(|p| e.error(p))?,
            (None, Some(r)) => {
                check_region(&r.text).map_err(|p| r.error(p))?;
                Endpoint {
                    host: settings.endpoint_host(&r.text),
                    port: DEFAULT_ENDPOINT_PORT,
                }
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "--region",
                    "neither a region nor an endpoint is given",
                    "give -r REGION (e.g. -r us-east-1), set AWSIOT_TUNNEL_REGION, or give -e HOST[:PORT]",
                ))
            }
        };

        let source = self.get(OptId::SourceListenPort);
        let destination = self.get(OptId::DestinationApp);
        let asked = match self.get(OptId::Mode) {
            Some(m) => Some(parse_mode(&m.text).map_err(|p| m.error(p))?),
            None => None,
        };
        let mode = match (source, destination, asked) {
            (Some(s), Some(d), _) => {
                return Err(ConfigError::new(
                    format!("{} and {}", s.subject(), d.subject()),
                    "both are given",
                    "give -s on the source side (where the client runs) or -d on the destination side (the device), not both",
                ))
            }
            (Some(s), None, Some(Mode::Destination)) => {
                return Err(ConfigError::new(
                    s.subject(),
                    "a listen port is a source option but --mode says destination",
                    "drop --mode, or use -d for the destination",
                ))
            }
            (None, Some(d), Some(Mode::Source)) => {
                return Err(ConfigError::new(
                    d.subject(),
                    "a destination app is a destination option but --mode says source",
                    "drop --mode, or use -s for the source",
                ))
            }
            (Some(_), None, _) => Mode::Source,
            (None, Some(_), _) => Mode::Destination,
            (None, None, Some(m)) => m,
            (None, None, None) => {
                return Err(ConfigError::new(
                    "--source-listen-port",
                    "no mode is given",
                    "give -s PORT on the source side, -d [HOST:]PORT on the destination side, or -m with a --config-dir mapping",
                ))
            }
        };

        let bind_address = match self.get(OptId::LocalBindAddress) {
            Some(b) => Some(parse_bind_address(&b.text).map_err(|p| b.error(p))?),
            None => None,
        };
        let default_host = bind_address.as_deref().unwrap_or(DEFAULT_TARGET_HOST);

        let mappings = match (source, destination) {
            (Some(s), _) => parse_listen_mappings(&s.text).map_err(|p| s.error(p))?,
            (_, Some(d)) => {
                parse_connect_mappings(&d.text, default_host).map_err(|p| d.error(p))?
            }
            _ => Vec::new(),
        };
        // Bad --config-dir values are dropped now, so the engine never meets one.
        let config_dir_mappings = if mappings.is_empty() {
            config_dir_mappings
                .into_iter()
                .filter(|(id, v)| {
                    let ok = match mode {
                        Mode::Source => parse_port(v).map(|_| ()),
                        Mode::Destination => parse_target(v, default_host).map(|_| ()),
                    };
                    if let Err((p, _)) = &ok {
                        warnings.push(format!("--config-dir mapping for {id} ignored: {p}"));
                    }
                    ok.is_ok()
                })
                .collect()
        } else {
            Vec::new()
        };

        let capath = match self.get(OptId::Capath) {
            Some(c) => {
                check_path(&c.text).map_err(|p| c.error(p))?;
                Some(PathBuf::from(&c.text))
            }
            None => None,
        };
        let no_ssl_host_verify = self.flag(OptId::NoSslHostVerify)?;
        if no_ssl_host_verify {
            warnings.push(
                "certificate verification is off (--no-ssl-host-verify): anyone on the network \
                 path can impersonate the service; use it only for testing"
                    .to_string(),
            );
        }
        let verbosity = match self.get(OptId::Verbose) {
            Some(v) => parse_verbosity(&v.text).map_err(|p| v.error(p))?,
            None => DEFAULT_VERBOSITY,
        };
        let client_type = match self.get(OptId::DestinationClientType) {
            None => ClientType::V3,
            Some(y) => {
                let t = match y.text.to_ascii_uppercase().as_str() {
                    "V1" => ClientType::V1,
                    "V2" => ClientType::V2,
                    "V3" => ClientType::V3,
                    _ => {
                        warnings.push(format!(
                            "{}: '{}' is not V1 or V2; using V3",
                            y.subject(),
                            quoted(&y.text)
                        ));
                        ClientType::V3
                    }
                };
                if mode == Mode::Destination && t != ClientType::V3 {
                    warnings.push(format!(
                        "{}: ignored on the destination, which detects the format from the source",
                        y.subject()
                    ));
                }
                t
            }
        };
        let config = Config {
            mode,
            access_token,
            client_token,
            endpoint,
            mappings,
            config_dir_mappings,
            bind_address,
            capath,
            no_ssl_host_verify,
            verbosity,
            client_type,
            settings,
            access_token_file: access_token_file.map(|(p, _)| p),
            client_token_file,
            user,
            require_non_root,
            sandbox,
        };
        Ok((config, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Args, Command};
    use crate::config::files::ConfigSource;
    use crate::config::model::{Mapping, Target};
    use crate::config::precedence::resolve;

    const TOKEN: &str = "AQGAAXiYSECRETTOKENTEXT0123456789abcdef";
    const CLIENT: &str = "0123456789abcdef-0123456789abcdef";

    fn args(list: &[&str]) -> Args {
        match parse(list.iter().copied()) {
            Ok(Command::Run(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    /// Resolves and builds with the given file text and environment.
    fn build_with(
        cli: &[&str],
        file: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let a = args(cli);
        let env_fn = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        let src = file.map(|text| ConfigSource {
            name: "lp.conf",
            text,
        });
        resolve(&a, src, &env_fn)?.into_config(Settings::default(), Vec::new(), &no_file)
    }

    /// No test here has an access-token file (`load`'s tests read one).
    fn no_file(p: &Path) -> Result<String, String> {
        Err(format!("cannot read {}: not in this test", p.display()))
    }

    /// With a token in the environment, so each test names only what it is about.
    fn build(cli: &[&str]) -> Result<Config, ConfigError> {
        build_with(cli, None, &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)]).map(|(c, _)| c)
    }

    fn err(cli: &[&str]) -> String {
        let e = build(cli).unwrap_err().to_string();
        assert!(!e.contains(TOKEN) && !e.contains("SECRET"), "{e}");
        e
    }

    fn tcp(host: &str, port: u16) -> Target {
        Target::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn minimal_source_and_destination() {
        let c = build(&["-r", "us-east-1", "-s", "5555"]).unwrap();
        assert_eq!(c.mode, Mode::Source);
        assert_eq!(c.access_token.expose(), TOKEN);
        assert_eq!(
            c.endpoint,
            Endpoint {
                host: "data.tunneling.iot.us-east-1.amazonaws.com".into(),
                port: 443
            }
        );
        assert_eq!(
            c.mappings,
            vec![Mapping::Listen {
                service_id: String::new(),
                port: 5555
            }]
        );
        assert_eq!(c.verbosity, 4);
        assert_eq!(c.client_type, ClientType::V3);
        assert!(!c.no_ssl_host_verify);

        let c = build(&["-r", "us-east-1", "-d", "22"]).unwrap();
        assert_eq!(c.mode, Mode::Destination);
        assert_eq!(
            c.mappings,
            vec![Mapping::Connect {
                service_id: String::new(),
                target: tcp("127.0.0.1", 22)
            }]
        );
    }

    #[test]
    fn china_regions_use_their_override() {
        let c = build(&["-r", "cn-north-1", "-s", "1"]).unwrap();
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.cn-north-1.amazonaws.com.cn"
        );
        let c = build(&["-r", "cn-northwest-1", "-s", "1"]).unwrap();
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.cn-northwest-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn endpoint_forms() {
        let ep = |e: &str| build(&["-e", e, "-s", "1"]).map(|c| c.endpoint);
        assert_eq!(
            ep("LocalHost").unwrap(),
            Endpoint {
                host: "localhost".into(),
                port: 443
            }
        );
        assert_eq!(
            ep("127.0.0.1:8443").unwrap(),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 8443
            }
        );
        assert_eq!(
            ep("[::1]:9000").unwrap(),
            Endpoint {
                host: "::1".into(),
                port: 9000
            }
        );
        assert_eq!(
            ep("[::1]").unwrap(),
            Endpoint {
                host: "::1".into(),
                port: 443
            }
        );
        for bad in [
            "wss://x/",
            "https://x",
            "x/tunnel",
            "x:0",
            "x:99999",
            "x:",
            "::1",
            "[::1",
            "[x]:1",
            "a b",
            "",
        ] {
            assert!(ep(bad).is_err(), "{bad}");
        }
        assert_eq!(
            err(&["-e", "wss://x/", "-s", "1"]),
            "--proxy-endpoint: 'wss://x/' has a scheme or a path; give host[:port] without wss:// or a path"
        );
        assert!(err(&["-e", &"a".repeat(254), "-s", "1"]).contains("longer than 253"));
    }

    #[test]
    fn region_rule() {
        assert!(err(&["-r", "US-EAST-1", "-s", "1"])
            .starts_with("--region: 'US-EAST-1' is not a region name"));
        assert!(err(&["-r", &"a".repeat(65), "-s", "1"]).contains("not 1 to 64"));
        assert!(err(&["-r", "us_east_1", "-s", "1"]).contains("not a region name"));
    }

    #[test]
    fn endpoint_and_region_exclusive_and_required() {
        assert_eq!(
            err(&["-e", "x", "-r", "us-east-1", "-s", "1"]),
            "--proxy-endpoint and --region: both are given; give either the region (-r) or the endpoint (-e), not both"
        );
        assert!(
            err(&["-s", "1"]).starts_with("--region: neither a region nor an endpoint is given")
        );
    }

    #[test]
    fn access_token_rules() {
        let e = build_with(&["-r", "us-east-1", "-s", "5555"], None, &[]).unwrap_err();
        assert_eq!(e.subject, "--access-token");
        assert!(e.to_string().contains("AWSIOT_TUNNEL_ACCESS_TOKEN"));
        let long = "A".repeat(4097);
        let with = |t: &str| build_with(&["-r", "us-east-1", "-s", "1", "-t", t], None, &[]);
        assert!(with(&"A".repeat(4096)).is_ok());
        let e = with(&long).unwrap_err().to_string();
        assert!(e.starts_with("--access-token: is 4097 bytes long"), "{e}");
        assert!(!e.contains("AAAA"));
        let e = with("SECRET\nTOKEN").unwrap_err().to_string();
        assert!(e.contains("control"), "{e}");
        assert!(!e.contains("SECRET"));
        assert!(with("SECRET\u{7f}").is_err());
        assert!(with("SECRÉT").is_err());
        // An empty env var is "unset"; an empty -t is a mistake worth naming.
        let e = with("").unwrap_err().to_string();
        assert!(e.starts_with("--access-token: is empty"), "{e}");
        let e = build_with(
            &["-r", "x", "-s", "1"],
            None,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", "")],
        );
        assert_eq!(e.unwrap_err().subject, "--access-token");
    }

    #[test]
    fn access_token_file_is_read_through_the_given_reader() {
        let a = args(&["-r", "x", "-s", "1", "--access-token-file", "/run/t"]);
        let no_env = |_: &str| -> Option<String> { None };
        let build = |read: &dyn Fn(&Path) -> Result<String, String>| {
            let r = resolve(&a, None, &no_env).unwrap();
            r.into_config(Settings::default(), Vec::new(), read)
        };
        let (c, _) = build(&|p| {
            assert_eq!(p, Path::new("/run/t"));
            Ok(TOKEN.to_string())
        })
        .unwrap();
        assert_eq!(c.access_token.expose(), TOKEN);
        assert_eq!(c.access_token_file.as_deref(), Some(Path::new("/run/t")));
        let e = build(&no_file).unwrap_err().to_string();
        assert_eq!(e, "--access-token-file: cannot read /run/t: not in this test; write the access token into the file");
        let e = build(&|_| Ok(String::new())).unwrap_err().to_string();
        assert!(e.starts_with("--access-token-file: is empty"), "{e}");
        let both = [
            "-t",
            TOKEN,
            "-r",
            "x",
            "-s",
            "1",
            "--access-token-file",
            "/t",
        ];
        let e = build_with(&both, None, &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("--access-token and --access-token-file: both are given"),
            "{e}"
        );
    }

    #[test]
    fn token_on_cli_warns() {
        let (_, w) = build_with(&["-t", TOKEN, "-r", "us-east-1", "-s", "1"], None, &[]).unwrap();
        assert!(w
            .iter()
            .any(|w| w.contains("process listings") && w.contains("AWSIOT_TUNNEL_ACCESS_TOKEN")));
        assert!(!w.iter().any(|w| w.contains(TOKEN)));
        let (_, w) = build_with(
            &["-r", "us-east-1", "-s", "1"],
            None,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)],
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn client_token_rules() {
        let ok = build(&["-r", "us-east-1", "-s", "1", "-i", CLIENT]).unwrap();
        assert_eq!(ok.client_token.unwrap().expose(), CLIENT);
        assert!(build(&["-r", "us-east-1", "-s", "1", "-i", &"a".repeat(128)]).is_ok());
        assert_eq!(
            err(&["-r", "us-east-1", "-s", "1", "-i", "SECRETshort"]),
            "--client-token: is 11 characters long; give 32 to 128 characters of A-Z, a-z, 0-9 and '-' (a UUID works)"
        );
        assert!(
            err(&["-r", "us-east-1", "-s", "1", "-i", &"a".repeat(129)]).contains("129 characters")
        );
        let e = err(&[
            "-r",
            "us-east-1",
            "-s",
            "1",
            "-i",
            "SECRET_0123456789abcdef0123456789abcdef",
        ]);
        assert!(e.contains("a character other than"), "{e}");
    }

    #[test]
    fn port_rules() {
        assert_eq!(
            err(&["-r", "us-east-1", "-s", "0"]),
            "--source-listen-port: port 0 is out of range; give a port from 1 to 65535"
        );
        assert!(err(&["-r", "us-east-1", "-s", "65536"]).contains("out of range"));
        assert!(err(&["-r", "us-east-1", "-s", "-1"]).contains("not a port number"));
        assert!(err(&["-r", "us-east-1", "-s", "+22"]).contains("not a port number"));
        assert!(err(&["-r", "us-east-1", "-s", "localhost:22"]).contains("not a port"));
        assert!(build(&["-r", "us-east-1", "-s", "65535"]).is_ok());
        assert!(err(&["-r", "us-east-1", "-d", "0"]).contains("port 0 is out of range"));
        assert!(err(&["-r", "us-east-1", "-d", "host:0"]).contains("port 0 is out of range"));
    }

    #[test]
    fn bind_address_is_default_host_for_bare_destination_port() {
        let c = build(&["-r", "us-east-1", "-d", "22", "-b", "192.168.1.5"]).unwrap();
        assert_eq!(
            c.mappings[0],
            Mapping::Connect {
                service_id: String::new(),
                target: tcp("192.168.1.5", 22)
            }
        );
        assert_eq!(c.bind_address.as_deref(), Some("192.168.1.5"));
        let c = build(&["-r", "us-east-1", "-s", "22", "-b", "[::1]"]).unwrap();
        assert_eq!(c.bind_address.as_deref(), Some("::1"));
        assert!(build(&["-r", "us-east-1", "-s", "22", "-b", "::"]).is_ok());
        assert!(err(&["-r", "us-east-1", "-s", "22", "-b", "a b"])
            .starts_with("--local-bind-address: 'a b' is not a host name"));
        assert!(
            err(&["-r", "us-east-1", "-s", "22", "-b", "[]"]).starts_with("--local-bind-address:")
        );
        assert!(err(&["-r", "us-east-1", "-s", "22", "-b", &"a".repeat(254)]).contains("253"));
        assert!(err(&["-r", "us-east-1", "-s", "22", "-b", "999.1.1.1"])
            .starts_with("--local-bind-address: '999.1.1.1' is not an IPv4 address"));
        assert!(err(&["-r", "us-east-1", "-d", "22", "-b", "1.2.3"])
            .starts_with("--local-bind-address: '1.2.3' is not an IPv4 address"));
        assert!(err(&["-r", "us-east-1", "-s", "22", "-b", "1::2::3"])
            .starts_with("--local-bind-address: '1::2::3' is not an IPv6 address"));
        assert!(build(&["-r", "us-east-1", "-s", "22", "-b", "router.lan"]).is_ok());
        assert!(build(&["-r", "us-east-1", "-s", "22", "-b", "0.0.0.0"]).is_ok());
    }

    #[test]
    fn mode_rules() {
        assert_eq!(
            err(&["-r", "us-east-1", "-s", "5555", "-d", "22"]),
            "--source-listen-port and --destination-app: both are given; give -s on the source side (where the client runs) or -d on the destination side (the device), not both"
        );
        assert!(err(&["-r", "us-east-1", "-s", "5555", "-m", "dst"]).starts_with("--source-listen-port: a listen port is a source option but --mode says destination"));
        assert!(err(&["-r", "us-east-1", "-d", "22", "-m", "source"])
            .starts_with("--destination-app: a destination app is a destination option"));
        assert!(err(&["-r", "us-east-1"]).contains("no mode is given"));
        assert!(err(&["-r", "us-east-1", "-m", "sideways"])
            .starts_with("--mode: 'sideways' is not a mode; give src, source, dst or destination"));
        for (m, want) in [
            ("src", Mode::Source),
            ("source", Mode::Source),
            ("dst", Mode::Destination),
            ("destination", Mode::Destination),
            ("DST", Mode::Destination),
        ] {
            let c = build(&["-r", "us-east-1", "-m", m]).unwrap();
            assert_eq!(c.mode, want);
            assert!(c.mappings.is_empty());
        }
        assert_eq!(
            build(&["-r", "us-east-1", "-s", "1", "-m", "src"])
                .unwrap()
                .mode,
            Mode::Source
        );
        assert_eq!(
            build(&["-r", "us-east-1", "-d", "1", "-m", "dst"])
                .unwrap()
                .mode,
            Mode::Destination
        );
    }

    #[test]
    fn verbosity_and_client_type() {
        let v = |x: &str| build(&["-r", "us-east-1", "-s", "1", "-v", x]).map(|c| c.verbosity);
        assert_eq!(v("0").unwrap(), 0);
        assert_eq!(v("6").unwrap(), 6);
        assert_eq!(v("255").unwrap(), 255);
        assert_eq!(v("65535").unwrap(), 255);
        assert!(v("65536").is_err());
        assert!(v("-1").is_err());
        assert!(err(&["-r", "us-east-1", "-s", "1", "-v", "loud"])
            .starts_with("--verbose: 'loud' is not a log level"));

        let y = |x: &str, side: &str| {
            build_with(
                &["-r", "us-east-1", side, "1", "-y", x],
                None,
                &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)],
            )
            .unwrap()
        };
        assert_eq!(y("V1", "-s").0.client_type, ClientType::V1);
        assert_eq!(y("v2", "-s").0.client_type, ClientType::V2);
        let (c, w) = y("V9", "-s");
        assert_eq!(c.client_type, ClientType::V3);
        assert!(w[0].contains("'V9' is not V1 or V2; using V3"), "{w:?}");
        let (_, w) = y("V1", "-d");
        assert!(w[0].contains("ignored on the destination"), "{w:?}");
    }

    #[test]
    fn capath_and_k() {
        let (c, w) = build_with(
            &["-r", "us-east-1", "-s", "1", "-c", "/etc/ssl/certs", "-k"],
            None,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)],
        )
        .unwrap();
        assert_eq!(c.capath, Some(PathBuf::from("/etc/ssl/certs")));
        assert!(c.no_ssl_host_verify);
        assert!(w
            .iter()
            .any(|w| w.contains("certificate verification is off")));
        assert!(err(&["-r", "us-east-1", "-s", "1", "-c", ""])
            .starts_with("--capath: is not a usable path"));
    }

    #[test]
    fn environment_variables() {
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_CLIENT_TOKEN", CLIENT),
            ("AWSIOT_TUNNEL_REGION", "eu-west-1"),
        ];
        let (c, _) = build_with(&["-s", "1"], None, &env).unwrap();
        assert_eq!(c.access_token.expose(), TOKEN);
        assert_eq!(c.client_token.unwrap().expose(), CLIENT);
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.eu-west-1.amazonaws.com"
        );
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_ENDPOINT", "Example.com:8443"),
        ];
        let (c, _) = build_with(&["-s", "1"], None, &env).unwrap();
        assert_eq!(
            c.endpoint,
            Endpoint {
                host: "example.com".into(),
                port: 8443
            }
        );
        // Errors name the variable, so the user edits the right place.
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_ENDPOINT", "wss://x"),
        ];
        let e = build_with(&["-s", "1"], None, &env)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("AWSIOT_TUNNEL_ENDPOINT: "), "{e}");
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_CLIENT_TOKEN", "SECRET"),
        ];
        let e = build_with(&["-s", "1", "-r", "x"], None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("AWSIOT_TUNNEL_CLIENT_TOKEN: is 6 characters long"),
            "{e}"
        );
        // Both endpoint variables set: the same layer names both, which is an error.
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_ENDPOINT", "x"),
            ("AWSIOT_TUNNEL_REGION", "y"),
        ];
        let e = build_with(&["-s", "1"], None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("AWSIOT_TUNNEL_ENDPOINT and AWSIOT_TUNNEL_REGION: both are given"),
            "{e}"
        );
    }

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

    #[test]
    fn file_values_conflict_with_cli_values_of_other_keys() {
        let e = build_with(
            &["-d", "22"],
            Some("source-listen-port = 5555\nregion = x"),
            &full_env(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "lp.conf line 1: source-listen-port and --destination-app: both are given"
            ),
            "{e}"
        );
    }

    #[test]
    fn config_file_values_are_used() {
        let text = b"# comment\n\n  [section]\nregion = us-east-1   # trailing comment\n\
                     \tsource-listen-port=SSH=5555\nno-ssl-host-verify = true\nverbose = 6\n";
        let (c, _) =
            build_with(&[], Some(std::str::from_utf8(text).unwrap()), &full_env()).unwrap();
        assert!(c.no_ssl_host_verify);
        assert_eq!(c.verbosity, 6);
        assert_eq!(
            c.mappings,
            vec![Mapping::Listen {
                service_id: "SSH".into(),
                port: 5555
            }]
        );
        let (c, _) =
            build_with(&["-s", "1"], Some("no-ssl-host-verify = off"), &full_env()).unwrap();
        assert!(!c.no_ssl_host_verify);
    }

    #[test]
    fn config_file_values_are_checked() {
        // Values in the file are validated with the file's line in the message.
        let e = build_with(
            &[],
            Some("region = us-east-1\nsource-listen-port = 0"),
            &full_env(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "lp.conf line 2: source-listen-port: port 0 is out of range; give a port from 1 to 65535");
        let e = build_with(
            &["-s", "1", "-r", "x"],
            Some("no-ssl-host-verify = maybe"),
            &full_env(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'maybe' is not true or false"), "{e}");
    }

    #[test]
    fn config_dir_mappings_are_checked_for_the_mode() {
        let a = args(&["-r", "us-east-1", "-m", "src"]);
        let env = |k: &str| (k == "AWSIOT_TUNNEL_ACCESS_TOKEN").then(|| TOKEN.to_string());
        let dir = vec![
            ("SSH".to_string(), "3333".to_string()),
            ("BAD".to_string(), "host:1".to_string()),
        ];
        let (c, w) = resolve(&a, None, &env)
            .unwrap()
            .into_config(Settings::default(), dir.clone(), &no_file)
            .unwrap();
        assert_eq!(
            c.config_dir_mappings,
            vec![("SSH".to_string(), "3333".to_string())]
        );
        assert!(w.iter().any(|w| w.contains("BAD ignored")), "{w:?}");
        let a = args(&["-r", "us-east-1", "-m", "dst", "-b", "10.1.1.1"]);
        let (c, _) = resolve(&a, None, &env)
            .unwrap()
            .into_config(Settings::default(), dir.clone(), &no_file)
            .unwrap();
        // Both are targets; the session parses them with -b as the host of a bare port.
        assert_eq!(c.config_dir_mappings, dir);
        assert_eq!(c.bind_address.as_deref(), Some("10.1.1.1"));
        // With -s/-d the directory is not consulted.
        let a = args(&["-r", "us-east-1", "-s", "1"]);
        let (c, _) = resolve(&a, None, &env)
            .unwrap()
            .into_config(
                Settings::default(),
                vec![("X".into(), "1".into())],
                &no_file,
            )
            .unwrap();
        assert!(c.config_dir_mappings.is_empty());
    }

    #[test]
    fn describe_masks_tokens() {
        let c = build(&["-r", "us-east-1", "-s", "SSH1=5555,SSH2=6666", "-i", CLIENT]).unwrap();
        let d = c.describe();
        assert!(!d.contains(TOKEN) && !d.contains(CLIENT), "{d}");
        assert!(
            d.contains(&format!("access-token = *** ({} chars)\n", TOKEN.len())),
            "{d}"
        );
        assert!(
            d.contains(&format!("client-token = *** ({} chars)\n", CLIENT.len())),
            "{d}"
        );
        assert!(d.contains("mode = source\n"));
        assert!(d.contains("proxy-endpoint = data.tunneling.iot.us-east-1.amazonaws.com:443\n"));
        assert!(d.contains("source-listen-port = SSH1=5555,SSH2=6666\n"));
        assert!(d.contains("local-bind-address = localhost (default)\n"));
        assert!(d.contains("verbose = 4 (info)\n"));
        assert!(d.contains("tunneling.proxy.websocket.ping_period_ms = 20000\n"));
        let d = build(&["-r", "us-east-1", "-d", "SSH=/run/s.sock,WEB=80"])
            .unwrap()
            .describe();
        assert!(
            d.contains("destination-app = SSH=/run/s.sock,WEB=127.0.0.1:80\n"),
            "{d}"
        );
        assert!(d.contains("client-token = (none)\n"));
    }
}
