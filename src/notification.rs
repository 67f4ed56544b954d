//! `--notification FILE`: one tunnel notification document, as the service publishes it
//! on the MQTT topic `$aws/things/<thing>/tunnels/notify`, turned into the destination's
//! access token, region and service list.
//!
//! ```json
//! {"clientAccessToken": "AQGAA…", "clientMode": "destination",
//!  "region": "eu-west-1", "services": ["SSH"]}
//! ```
//!
//! [`parse`] checks one document (at most [`MAX_DOCUMENT`] bytes; unknown fields are
//! ignored), [`read`] fetches it from a file or stdin, [`apply`] puts its values into the
//! resolved options before validation (the notification gives the token, the mode and
//! the region; an explicit `-e` still overrides the endpoint), and [`finish`] checks the
//! announced services against the `-d` mapping afterwards. Every failure is one
//! [`ConfigError`] line; no message ever contains the token or any other text of the
//! document. Nothing here talks MQTT: `cross/agent/tunnel-agent.sh` receives the message
//! with `mosquitto_sub` and starts the proxy with this option.

use crate::cli::{self, OptId};
use crate::config::{self, Config, ConfigError, Mapping, Origin, Resolved, Secret, Value};
use std::io::Read;
use tinyjson::JsonValue;

/// Largest document accepted. The service's notifications are a few hundred bytes.
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// Deepest nesting accepted. tinyjson parses recursively, so a document of nothing but
/// `[[[[…` must be refused before it reaches the parser; a notification is two levels.
const MAX_DEPTH: usize = 32;

/// What a notification tells a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub access_token: Secret,
    pub region: String,
    /// Service ids in the document's order, duplicates dropped; never empty.
    pub services: Vec<String>,
}

const FIX_DOCUMENT: &str =
    "give the JSON document the service published on $aws/things/THING/tunnels/notify";

fn bad(subject: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError::new(subject, problem, fix)
}

/// How `--notification PATH` is named in messages (`-` is stdin).
pub fn label(path: &str) -> String {
    if path == "-" {
        "--notification (stdin)".to_string()
    } else {
        format!("--notification {}", config::shown(path))
    }
}

/// The deepest nesting of arrays and objects, counted outside strings; stops counting
/// once past `limit`.
pub(crate) fn depth(doc: &[u8], limit: usize) -> usize {
    let (mut level, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in doc {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                level += 1;
                deepest = deepest.max(level);
                if deepest > limit {
                    break;
                }
            }
            b']' | b'}' => level = level.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A string field: missing and wrong-typed are distinct errors. The value is never shown.
fn string_field<'a>(
    obj: &'a std::collections::HashMap<String, JsonValue>,
    name: &str,
    what: &str,
) -> Result<&'a str, ConfigError> {
    match obj.get(name) {
        Some(JsonValue::String(s)) => Ok(s),
        Some(_) => Err(bad(
            name,
            "is not a JSON string",
            format!("give {what} as a string"),
        )),
        None => Err(bad(
            name,
            "is missing",
            format!("the document must hold {what}; {FIX_DOCUMENT}"),
        )),
    }
}

/// Checks one notification document. Errors name the field (or the line and column of
/// a syntax error) and never quote the document.
pub fn parse(doc: &[u8]) -> Result<Notification, ConfigError> {
    if doc.len() > MAX_DOCUMENT {
        return Err(bad(
            "",
            format!("is larger than {} KiB", MAX_DOCUMENT / 1024),
            FIX_DOCUMENT,
        ));
    }
    let text = std::str::from_utf8(doc).map_err(|_| bad("", "is not UTF-8 text", FIX_DOCUMENT))?;
    if text.trim().is_empty() {
        return Err(bad("", "is empty", FIX_DOCUMENT));
    }
    if depth(doc, MAX_DEPTH) > MAX_DEPTH {
        return Err(bad(
            "",
            format!("is nested more than {MAX_DEPTH} levels deep"),
            FIX_DOCUMENT,
        ));
    }
    let root: JsonValue = text.parse().map_err(|e: tinyjson::JsonParseError| {
        // The parser's own message can quote the input (the token): only the position.
        bad(
            &format!("line {} column {}", e.line(), e.column()),
            "not valid JSON",
            FIX_DOCUMENT,
        )
    })?;
    let JsonValue::Object(obj) = &root else {
        return Err(bad("", "the top level is not a JSON object", FIX_DOCUMENT));
    };

    let token = string_field(obj, "clientAccessToken", "the destination's access token")?;
    config::check_access_token(token).map_err(|(p, f)| bad("clientAccessToken", p, f))?;

    let mode = string_field(obj, "clientMode", "\"destination\"")?;
    match mode {
        "destination" => {}
        "source" => {
            return Err(bad(
                "clientMode",
                "is \"source\": this notification is for the source end of the tunnel",
                "localproxy --notification starts the destination on the device; give the source its token with AWSIOT_TUNNEL_ACCESS_TOKEN",
            ))
        }
        other => {
            return Err(bad(
                "clientMode",
                format!("'{}' is not \"destination\"", config::shown(other)),
                "only destination notifications can start localproxy --notification",
            ))
        }
    }

    let region = string_field(obj, "region", "the tunnel's region")?;
    config::check_region(region).map_err(|(p, f)| bad("region", p, f))?;

    let list = match obj.get("services") {
        Some(JsonValue::Array(list)) => list,
        Some(_) => {
            return Err(bad(
                "services",
                "is not a JSON list",
                "give the tunnel's services as a list of strings, e.g. [\"SSH\"]",
            ))
        }
        None => {
            return Err(bad(
                "services",
                "is missing",
                format!("the document must list the tunnel's services; {FIX_DOCUMENT}"),
            ))
        }
    };
    if list.is_empty() {
        return Err(bad(
            "services",
            "is an empty list",
            "open the tunnel with at least one service, e.g. --destination-config thingName=THING,services=SSH",
        ));
    }
    let mut services: Vec<String> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let subject = format!("services[{i}]");
        let JsonValue::String(id) = item else {
            return Err(bad(
                &subject,
                "is not a JSON string",
                "give each service id as a string",
            ));
        };
        config::check_service_id(id).map_err(|(p, f)| bad(&subject, p, f))?;
        if !services.contains(id) {
            services.push(id.clone());
        }
    }
    Ok(Notification {
        access_token: Secret::new(token),
        region: region.to_string(),
        services,
    })
}

/// Reads and checks the document at `path` (`-`: stdin). Errors start with
/// `--notification PATH`.
pub fn read(path: &str) -> Result<Notification, ConfigError> {
    let subject = label(path);
    config::check_path(path).map_err(|(p, f)| bad(&subject, p, f))?;
    let cannot = |e: std::io::Error| {
        bad(
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
            return Err(bad(
                &subject,
                "is a directory",
                "give the path of the notification file",
            ));
        }
        f.take(limit).read_to_end(&mut doc).map_err(cannot)?;
    }
    parse(&doc).map_err(|e| e.within(&subject))
}

/// Puts the notification's token, mode and region into the resolved options, before
/// validation. The notification wins over `-t`, `-r` and their variables (with a
/// warning when they were given); an `-e` (any layer) keeps the endpoint. `-s` or
/// `-m source` contradict a destination notification and are errors.
pub fn apply(resolved: &mut Resolved, n: &Notification, path: &str) -> Result<(), ConfigError> {
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
pub fn finish(
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
    use crate::config::{resolve, Mode, Target};
    use crate::settings::Settings;

    const TOKEN: &str = "AQGAAXhSECRETdestinationTOKEN0123456789+/=";

    fn doc(token: &str, mode: &str, region: &str, services: &str) -> String {
        format!(
            r#"{{"clientAccessToken": {token}, "clientMode": {mode}, "region": {region}, "services": {services}}}"#
        )
    }

    fn good() -> String {
        doc(
            &format!("\"{TOKEN}\""),
            "\"destination\"",
            "\"eu-west-1\"",
            "[\"SSH\"]",
        )
    }

    fn err(d: &str) -> String {
        let e = parse(d.as_bytes()).unwrap_err().to_string();
        assert!(!e.contains("SECRET"), "the token leaked: {e}");
        assert!(!e.contains('\n'), "more than one line: {e}");
        e
    }

    #[test]
    fn a_good_document() {
        let n = parse(good().as_bytes()).unwrap();
        assert_eq!(n.access_token.expose(), TOKEN);
        assert_eq!(n.region, "eu-west-1");
        assert_eq!(n.services, vec!["SSH".to_string()]);
        // Unknown fields, other key orders, whitespace and duplicate services are fine.
        let d = format!(
            "\n {{ \"services\": [\"SSH\", \"HTTP\", \"SSH\"], \"future\": {{\"x\": [1, null]}},\n\
             \"region\": \"cn-north-1\", \"clientMode\": \"destination\", \"clientAccessToken\": \"{TOKEN}\" }}\n"
        );
        let n = parse(d.as_bytes()).unwrap();
        assert_eq!(n.services, vec!["SSH".to_string(), "HTTP".to_string()]);
        assert_eq!(n.region, "cn-north-1");
        assert_eq!(format!("{n:?}").matches("SECRET").count(), 0);
    }

    #[test]
    fn not_json() {
        let e = err(&format!("{{\"clientAccessToken\": \"{TOKEN}\", oops}}"));
        assert!(e.starts_with("line 1 column "), "{e}");
        assert!(e.contains("not valid JSON"), "{e}");
        assert!(err("clientAccessToken=SECRET").contains("not valid JSON"));
        assert!(err("\u{feff}{}").contains("not valid JSON"));
    }

    #[test]
    fn not_an_object() {
        for d in [
            "[]",
            "\"destination\"",
            "42",
            "null",
            "[{\"clientMode\": \"destination\"}]",
        ] {
            assert!(err(d).contains("the top level is not a JSON object"), "{d}");
        }
    }

    #[test]
    fn missing_or_wrong_typed_token() {
        let e = err(
            &doc("null", "\"destination\"", "\"eu-west-1\"", "[\"SSH\"]")
                .replace("\"clientAccessToken\": null, ", ""),
        );
        assert!(e.starts_with("clientAccessToken: is missing"), "{e}");
        for t in ["null", "42", "[\"SECRET\"]", "{\"t\": \"SECRET\"}", "true"] {
            let e = err(&doc(t, "\"destination\"", "\"eu-west-1\"", "[\"SSH\"]"));
            assert!(
                e.starts_with("clientAccessToken: is not a JSON string"),
                "{e}"
            );
        }
        let e = err(&doc(
            "\"\"",
            "\"destination\"",
            "\"eu-west-1\"",
            "[\"SSH\"]",
        ));
        assert!(e.starts_with("clientAccessToken: is empty"), "{e}");
        let e = err(&doc(
            "\"SECRET\\nTOKEN\"",
            "\"destination\"",
            "\"eu-west-1\"",
            "[\"SSH\"]",
        ));
        assert!(
            e.starts_with("clientAccessToken: contains a control"),
            "{e}"
        );
    }

    #[test]
    fn client_mode_source_or_other() {
        let t = format!("\"{TOKEN}\"");
        let e = err(&doc(&t, "\"source\"", "\"eu-west-1\"", "[\"SSH\"]"));
        assert!(e.starts_with("clientMode: is \"source\""), "{e}");
        let e = err(&doc(&t, "\"Destination \"", "\"eu-west-1\"", "[\"SSH\"]"));
        assert!(
            e.starts_with("clientMode: 'Destination ' is not \"destination\""),
            "{e}"
        );
        let e = err(&doc(&t, "1", "\"eu-west-1\"", "[\"SSH\"]"));
        assert!(e.starts_with("clientMode: is not a JSON string"), "{e}");
        let e = err(&good().replace("\"clientMode\": \"destination\", ", ""));
        assert!(e.starts_with("clientMode: is missing"), "{e}");
    }

    #[test]
    fn bad_region() {
        let t = format!("\"{TOKEN}\"");
        for r in ["\"EU-WEST-1\"", "\"\"", "\"eu west 1\"", "\"eu-west-1/x\""] {
            let e = err(&doc(&t, "\"destination\"", r, "[\"SSH\"]"));
            assert!(e.starts_with("region: '"), "{r}: {e}");
        }
        let e = err(&doc(&t, "\"destination\"", "[]", "[\"SSH\"]"));
        assert!(e.starts_with("region: is not a JSON string"), "{e}");
        let e = err(&good().replace("\"region\": \"eu-west-1\", ", ""));
        assert!(e.starts_with("region: is missing"), "{e}");
    }

    #[test]
    fn services_not_a_list() {
        let t = format!("\"{TOKEN}\"");
        for s in ["\"SSH\"", "{\"SSH\": 22}", "null", "1"] {
            let e = err(&doc(&t, "\"destination\"", "\"eu-west-1\"", s));
            assert!(e.starts_with("services: is not a JSON list"), "{s}: {e}");
        }
        let e = err(&doc(&t, "\"destination\"", "\"eu-west-1\"", "[]"));
        assert!(e.starts_with("services: is an empty list"), "{e}");
        let e = err(&good().replace(", \"services\": [\"SSH\"]", ""));
        assert!(e.starts_with("services: is missing"), "{e}");
    }

    #[test]
    fn service_id_invalid() {
        let t = format!("\"{TOKEN}\"");
        let e = err(&doc(
            &t,
            "\"destination\"",
            "\"eu-west-1\"",
            "[\"SSH\", \"a b\"]",
        ));
        assert!(
            e.starts_with("services[1]: 'a b' is not a service id"),
            "{e}"
        );
        let e = err(&doc(&t, "\"destination\"", "\"eu-west-1\"", "[\"\"]"));
        assert!(e.starts_with("services[0]: is empty"), "{e}");
        let e = err(&doc(&t, "\"destination\"", "\"eu-west-1\"", "[22]"));
        assert!(e.starts_with("services[0]: is not a JSON string"), "{e}");
        let long = format!("[\"{}\"]", "S".repeat(129));
        let e = err(&doc(&t, "\"destination\"", "\"eu-west-1\"", &long));
        assert!(e.starts_with("services[0]: "), "{e}");
    }

    #[test]
    fn oversized() {
        let mut d = good();
        d.pop();
        d.push_str(&format!(", \"pad\": \"{}\"}}", "x".repeat(MAX_DOCUMENT)));
        assert!(err(&d).starts_with("is larger than 64 KiB"));
        // Exactly at the limit is still read.
        let mut d = good();
        d.pop();
        let pad = MAX_DOCUMENT - d.len() - ", \"pad\": \"\"}".len();
        d.push_str(&format!(", \"pad\": \"{}\"}}", "x".repeat(pad)));
        assert_eq!(d.len(), MAX_DOCUMENT);
        assert!(parse(d.as_bytes()).is_ok());
        // Deep nesting is refused before the recursive parser sees it.
        let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
        assert!(err(&deep).contains("nested more than 32 levels"));
        let strings = format!("{{\"x\": \"{}\", {}", "[".repeat(100), &good()[1..]);
        assert!(parse(strings.as_bytes()).is_ok());
    }

    #[test]
    fn empty() {
        for d in ["", "  \n\t", "\n"] {
            assert!(err(d).starts_with("is empty"), "{d:?}");
        }
        assert!(parse(b"\xff\xfe{}")
            .unwrap_err()
            .to_string()
            .starts_with("is not UTF-8"));
    }

    #[test]
    fn read_from_a_file() {
        let dir = std::env::temp_dir().join(format!("lp-notification-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("n.json");
        std::fs::write(&p, good()).unwrap();
        let path = p.to_str().unwrap();
        assert_eq!(read(path).unwrap().region, "eu-west-1");
        std::fs::write(&p, "x".repeat(MAX_DOCUMENT + 10)).unwrap();
        let e = read(path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("--notification {path}: is larger than 64 KiB; {FIX_DOCUMENT}")
        );
        std::fs::write(&p, "[1]").unwrap();
        assert!(read(path)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("--notification {path}: the top level")));
        std::fs::write(&p, "{").unwrap();
        assert!(read(path)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("--notification {path}: line 1 column")));
        let e = read(dir.join("missing").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
        let e = read(dir.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert!(read("")
            .unwrap_err()
            .to_string()
            .contains("not a usable path"));
        let _ = std::fs::remove_dir_all(&dir);
    }

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
            .into_config(Settings::default(), vec![("WEB".into(), "8080".into())])
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
