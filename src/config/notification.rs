//! `--notification FILE`: one tunnel notification document, as the service publishes it
//! on the MQTT topic `$aws/things/<thing>/tunnels/notify`, checked and turned into the
//! destination's access token, region and service list.
//!
//! ```json
//! {"clientAccessToken": "AQGAA…", "clientMode": "destination",
//!  "region": "eu-west-1", "services": ["SSH"]}
//! ```
//!
//! [`parse`] checks one document (at most [`MAX_DOCUMENT`] bytes; unknown fields are
//! ignored). It does nothing else: `load` reads the file or stdin, and
//! `from_notification` applies the result to the other options. Every failure is one
//! [`ConfigError`] line; no message ever contains the token or any other text of the
//! document. Nothing here talks MQTT: `cross/agent/tunnel-agent.sh` receives the message
//! with `mosquitto_sub` and starts the proxy with this option.

use super::error::{quoted, ConfigError};
use super::model::Secret;
use super::rules::{check_access_token, check_region, check_service_id, json_depth};
use tinyjson::JsonValue;

/// Largest document accepted. The service's notifications are a few hundred bytes.
pub(crate) const MAX_DOCUMENT: usize = 64 * 1024;

/// Deepest nesting accepted. tinyjson parses recursively, so a document of nothing but
/// `[[[[…` must be refused before it reaches the parser; a notification is two levels.
const MAX_DEPTH: usize = 32;

/// What a notification tells a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notification {
    pub(crate) access_token: Secret,
    pub(crate) region: String,
    /// Service ids in the document's order, duplicates dropped; never empty.
    pub(crate) services: Vec<String>,
}

pub(crate) const FIX_DOCUMENT: &str =
    "give the JSON document the service published on $aws/things/THING/tunnels/notify";

fn bad(subject: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError::new(subject, problem, fix)
}

/// How `--notification PATH` is named in messages (`-` is stdin).
pub(crate) fn label(path: &str) -> String {
    if path == "-" {
        "--notification (stdin)".to_string()
    } else {
        format!("--notification {}", quoted(path))
    }
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
pub(crate) fn parse(doc: &[u8]) -> Result<Notification, ConfigError> {
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
    if json_depth(doc, MAX_DEPTH) > MAX_DEPTH {
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
    check_access_token(token).map_err(|(p, f)| bad("clientAccessToken", p, f))?;

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
                format!("'{}' is not \"destination\"", quoted(other)),
                "only destination notifications can start localproxy --notification",
            ))
        }
    }

    let region = string_field(obj, "region", "the tunnel's region")?;
    check_region(region).map_err(|(p, f)| bad("region", p, f))?;

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
        check_service_id(id).map_err(|(p, f)| bad(&subject, p, f))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
