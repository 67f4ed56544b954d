//! `--notification` as one more origin of values: [`apply`] puts the document's access
//! token, mode and region into the resolved options before validation, and [`finish`]
//! checks the services it announces against the validated mapping afterwards.
//!
//! The notification wins over `-t`, `-r` and their variables (with a warning); an
//! explicit `-e` keeps the endpoint; `-s` or `--mode source` contradict it. Reading and
//! checking the document itself is `notification` (and `load` for the file); this file
//! only combines it with the other options. Every failure is one [`ConfigError`] line
//! that never contains the token.

use super::effective::Config;
use super::error::ConfigError;
use super::model::Mapping;
use super::notification::{label, Notification};
use super::precedence::{Origin, Resolved, Value};
use crate::cli::{self, OptId};

/// Puts the notification's token, mode and region into the resolved options, before
/// validation. The notification wins over `-t`, `-r` and their variables (with a
/// warning when they were given); an `-e` (any layer) keeps the endpoint. `-s` or
/// `-m source` contradict a destination notification and are errors.
pub(crate) fn apply(
    resolved: &mut Resolved,
    n: &Notification,
    path: &str,
) -> Result<(), ConfigError> {
    let subject = label(path);
    let from = |id: OptId, text: &str| Value {
        text: text.to_string(),
        origin: Origin::Notification(subject.clone()),
        spec: cli::spec(id),
    };
    if let Some(s) = resolved.get(OptId::SourceListenPort) {
        return Err(ConfigError::new(
            format!("{} and {subject}", s.subject()),
            "a listen port is a source option but the notification is for a destination",
            "drop -s; map the notification's services with -d, e.g. -d SSH=22",
        ));
    }
    if let Some(m) = resolved.get(OptId::Mode) {
        if matches!(m.text.to_ascii_lowercase().as_str(), "src" | "source") {
            return Err(ConfigError::new(
                format!("{} and {subject}", m.subject()),
                "--mode says source but the notification is for a destination",
                "drop --mode",
            ));
        }
    } else if resolved.get(OptId::DestinationApp).is_none() {
        // No -d: the mapping comes from --config-dir, which needs the mode.
        resolved.set(from(OptId::Mode, "destination"));
    }
    if let Some(t) = resolved.get(OptId::AccessToken) {
        resolved.warnings.push(format!(
            "{}: ignored; the access token comes from {subject}",
            t.subject()
        ));
    }
    resolved.set(from(OptId::AccessToken, n.access_token.expose()));
    if resolved.get(OptId::ProxyEndpoint).is_none() {
        if let Some(r) = resolved.get(OptId::Region) {
            if r.text != n.region {
                resolved.warnings.push(format!(
                    "{}: ignored; the tunnel is in {}, as {subject} says",
                    r.subject(),
                    n.region
                ));
            }
        }
        resolved.set(from(OptId::Region, &n.region));
    }
    Ok(())
}

/// Checks the announced services against the mapping once the configuration is valid:
/// every announced service needs a target (an error naming the first one without), a
/// target for a service the tunnel does not have is a warning and is dropped (so the
/// mapping equals what SERVICE_IDS will announce).
pub(crate) fn finish(
    config: &mut Config,
    n: &Notification,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let subject = label(path);
    let no_target = |id: &str, fix: String| {
        ConfigError::new(
            subject.clone(),
            format!("the tunnel's service {id} has no target"),
            fix,
        )
    };
    let unnamed = matches!(config.mappings.as_slice(), [m] if m.service_id().is_empty());
    if unnamed {
        // `-d 22` serves a tunnel with exactly one service, whatever its name.
        if let [_, second, ..] = n.services.as_slice() {
            return Err(no_target(
                second,
                format!(
                    "the tunnel has {} services; name a target for each, e.g. -d {}",
                    n.services.len(),
                    n.services
                        .iter()
                        .map(|s| format!("{s}=PORT"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ));
        }
        return Ok(());
    }
    if config.mappings.is_empty() {
        if let Some(id) = n
            .services
            .iter()
            .find(|id| !config.config_dir_mappings.iter().any(|(k, _)| k == *id))
        {
            return Err(no_target(
                id,
                format!("give -d {id}=PORT (or a {id} = PORT line in --config-dir)"),
            ));
        }
        return Ok(());
    }
    if let Some(id) = n
        .services
        .iter()
        .find(|id| !config.mappings.iter().any(|m| m.service_id() == *id))
    {
        return Err(no_target(id, format!("add {id}=PORT to -d")));
    }
    config.mappings.retain(|m: &Mapping| {
        let announced = n.services.iter().any(|id| id == m.service_id());
        if !announced {
            warnings.push(format!(
                "--destination-app: {} is not a service of this tunnel ({}); its target is not used",
                m.service_id(),
                n.services.join(",")
            ));
        }
        announced
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse as parse_cli, Command};
    use crate::config::model::{Mode, Secret, Target};
    use crate::config::precedence::resolve;
    use crate::config::settings::Settings;

    const TOKEN: &str = "AQGAAXhSECRETdestinationTOKEN0123456789+/=";

    /// Options and environment → Config, with a notification applied as `load` does.
    fn build(
        argv: &[&str],
        env: &[(&str, &str)],
        n: &Notification,
    ) -> Result<(Config, Vec<String>), String> {
        let args = match parse_cli(argv.iter().copied()) {
            Ok(Command::Run(a)) => a,
            other => panic!("{other:?}"),
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut r = resolve(&args, None, &lookup).map_err(|e| e.to_string())?;
        apply(&mut r, n, "/run/n.json").map_err(|e| e.to_string())?;
        let (mut c, mut w) = r
            .into_config(
                Settings::default(),
                vec![("WEB".into(), "8080".into())],
                &|_| Err("no access-token file in this test".into()),
            )
            .map_err(|e| e.to_string())?;
        finish(&mut c, n, "/run/n.json", &mut w).map_err(|e| e.to_string())?;
        Ok((c, w))
    }

    fn note(services: &[&str]) -> Notification {
        Notification {
            access_token: Secret::new(TOKEN),
            region: "eu-west-1".into(),
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_notification_gives_token_mode_and_region() {
        let (c, w) = build(&["-d", "SSH=22"], &[], &note(&["SSH"])).unwrap();
        assert_eq!(c.mode, Mode::Destination);
        assert_eq!(c.access_token.expose(), TOKEN);
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.eu-west-1.amazonaws.com"
        );
        assert!(w.is_empty(), "{w:?}");
        let d = c.describe();
        assert!(!d.contains("SECRET"), "{d}");
        assert!(d.contains(&format!("access-token = *** ({} chars)", TOKEN.len())));
        // Other tokens and regions yield to it, with a warning each.
        let (c, w) = build(
            &["-d", "22", "-r", "us-east-1"],
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", "ENVTOKEN")],
            &note(&["SSH"]),
        )
        .unwrap();
        assert_eq!(c.access_token.expose(), TOKEN);
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.eu-west-1.amazonaws.com"
        );
        assert!(
            w.iter()
                .any(|w| w.starts_with("AWSIOT_TUNNEL_ACCESS_TOKEN: ignored")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|w| w.starts_with("--region: ignored")),
            "{w:?}"
        );
        assert!(!w
            .iter()
            .any(|w| w.contains("ENVTOKEN") || w.contains("SECRET")));
        // An explicit endpoint (command line or environment) overrides the region.
        let (c, _) = build(&["-d", "22", "-e", "localhost:8443"], &[], &note(&["SSH"])).unwrap();
        assert_eq!(
            (c.endpoint.host.as_str(), c.endpoint.port),
            ("localhost", 8443)
        );
        let (c, _) = build(
            &["-d", "22"],
            &[("AWSIOT_TUNNEL_ENDPOINT", "tb.example:9")],
            &note(&["SSH"]),
        )
        .unwrap();
        assert_eq!(c.endpoint.host, "tb.example");
    }

    #[test]
    fn source_options_contradict_it() {
        let e = build(&["-s", "5555"], &[], &note(&["SSH"])).unwrap_err();
        assert!(e.starts_with("--source-listen-port and --notification /run/n.json: a listen port is a source option"), "{e}");
        let e = build(&["-m", "src"], &[], &note(&["SSH"])).unwrap_err();
        assert!(e.contains("--mode says source"), "{e}");
        assert!(build(&["-m", "dst", "-d", "SSH=22"], &[], &note(&["SSH"])).is_ok());
    }

    #[test]
    fn services_against_the_mapping() {
        // A single unnamed target serves a one-service tunnel.
        let (c, _) = build(&["-d", "22"], &[], &note(&["SSH"])).unwrap();
        assert_eq!(c.mappings.len(), 1);
        let e = build(&["-d", "22"], &[], &note(&["SSH", "HTTP"])).unwrap_err();
        assert_eq!(e, "--notification /run/n.json: the tunnel's service HTTP has no target; the tunnel has 2 services; name a target for each, e.g. -d SSH=PORT,HTTP=PORT");
        // A service without a target is an error naming it.
        let e = build(&["-d", "SSH=22"], &[], &note(&["SSH", "HTTP"])).unwrap_err();
        assert_eq!(e, "--notification /run/n.json: the tunnel's service HTTP has no target; add HTTP=PORT to -d");
        // A target for a service the tunnel lacks: a warning, and it is dropped.
        let (c, w) = build(&["-d", "SSH=22,HTTP=80,VNC=5900"], &[], &note(&["HTTP"])).unwrap();
        assert_eq!(
            c.mappings,
            vec![Mapping::Connect {
                service_id: "HTTP".into(),
                target: Target::Tcp {
                    host: "127.0.0.1".into(),
                    port: 80
                }
            }]
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("SSH is not a service of this tunnel (HTTP)"),
            "{w:?}"
        );
        // Without -d the --config-dir mapping (here WEB = 8080) must cover the services.
        let (c, _) = build(&[], &[], &note(&["WEB"])).unwrap();
        assert_eq!(c.mode, Mode::Destination);
        let e = build(&[], &[], &note(&["WEB", "SSH"])).unwrap_err();
        assert!(e.contains("the tunnel's service SSH has no target"), "{e}");
    }
}
