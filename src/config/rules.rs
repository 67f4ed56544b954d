//! The rules for one value at a time (protocol.md §2.3): tokens, region, host, service
//! id, port, path, mode, log level, bind address, endpoint, destination target, the
//! `-s`/`-d` mapping lists and true/false, each parsed or checked on its own.
//!
//! Every rule returns the parsed value or a [`Problem`] (problem and fix) that the
//! caller turns into a [`ConfigError`](super::error::ConfigError) naming the option and
//! where its value came from. No rule knows which option it serves, reads a file or
//! looks at another option: combining options is `validate`'s job. The one target
//! parser here is also what the session uses for `--config-dir` values.

use super::error::{problem, quoted, Problem};
use super::model::{Endpoint, Mapping, Mode, Target, DEFAULT_ENDPOINT_PORT};
use std::path::PathBuf;

/// Access tokens: 1 to 4096 printable ASCII characters (the text is never shown).
pub(crate) fn check_access_token(t: &str) -> Result<(), Problem> {
    if t.is_empty() {
        return Err(problem(
            "is empty",
            "give the access token CreateTunnel returned",
        ));
    }
    if t.len() > 4096 {
        return Err(problem(
            format!("is {} bytes long, more than 4096", t.len()),
            "give the access token itself, not a file or a JSON document",
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(problem(
            "contains a control or non-ASCII character",
            "give the token exactly as CreateTunnel returned it (no line breaks)",
        ));
    }
    Ok(())
}

/// Client tokens: 32 to 128 of `[A-Za-z0-9-]` (the text is never shown).
pub(crate) fn check_client_token(t: &str) -> Result<(), Problem> {
    let fix = "give 32 to 128 characters of A-Z, a-z, 0-9 and '-' (a UUID works)";
    if !(32..=128).contains(&t.len()) {
        // Length in bytes of a token we do not show; safe to say.
        return Err(problem(
            format!("is {} characters long", t.chars().count()),
            fix,
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(problem(
            "contains a character other than A-Z, a-z, 0-9 and '-'",
            fix,
        ));
    }
    Ok(())
}

/// Region names: `[a-z0-9-]`, 1 to 64 characters.
pub(crate) fn check_region(r: &str) -> Result<(), Problem> {
    let fix = "give a region like us-east-1 (lowercase letters, digits and '-')";
    if r.is_empty() || r.len() > 64 {
        return Err(problem(
            format!("'{}' is not 1 to 64 characters", quoted(r)),
            fix,
        ));
    }
    if !r
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(problem(
            format!("'{}' is not a region name", quoted(r)),
            fix,
        ));
    }
    Ok(())
}

/// Host names and addresses: at most 253 of `[A-Za-z0-9.:[]-]`, as the reference.
pub(crate) fn check_host(h: &str) -> Result<(), Problem> {
    let fix = "give a host name or IP address (letters, digits, '.', '-', ':')";
    if h.is_empty() {
        return Err(problem("is empty", fix));
    }
    if h.len() > 253 {
        return Err(problem("is longer than 253 characters", fix));
    }
    if !h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".:[]-".contains(&b))
    {
        return Err(problem(format!("'{}' is not a host name", quoted(h)), fix));
    }
    Ok(())
}

/// Service ids: 1 to 128 of `[A-Za-z0-9_-]`.
pub(crate) fn check_service_id(id: &str) -> Result<(), Problem> {
    let fix = "give a service id of letters, digits, '_' and '-' (at most 128), as in the tunnel's services";
    if id.is_empty() {
        return Err(problem("is empty", fix));
    }
    if id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(problem(
            format!("'{}' is not a service id", quoted(id)),
            fix,
        ));
    }
    Ok(())
}

/// Ports: digits only, 1 to 65535.
pub(crate) fn parse_port(p: &str) -> Result<u16, Problem> {
    let fix = "give a port from 1 to 65535";
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem(
            format!("'{}' is not a port number", quoted(p)),
            fix,
        ));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(problem(format!("port {} is out of range", quoted(p)), fix)),
    }
}

/// File and directory paths: non-empty, at most 4096 bytes, no NUL.
pub(crate) fn check_path(p: &str) -> Result<(), Problem> {
    if p.is_empty() || p.len() > 4096 || p.contains('\0') {
        return Err(problem(
            "is not a usable path",
            "give a path of 1 to 4096 characters",
        ));
    }
    Ok(())
}

/// `-m`: src, source, dst or destination, any case.
pub(crate) fn parse_mode(m: &str) -> Result<Mode, Problem> {
    match m.to_ascii_lowercase().as_str() {
        "src" | "source" => Ok(Mode::Source),
        "dst" | "destination" => Ok(Mode::Destination),
        _ => Err(problem(
            format!("'{}' is not a mode", quoted(m)),
            "give src, source, dst or destination",
        )),
    }
}

/// `-v`: the reference takes 0..=65535; everything from 6 up is trace, so clamp to u8.
pub(crate) fn parse_verbosity(v: &str) -> Result<u8, Problem> {
    let fix = "give a number: 0 off, 1 fatal, 2 error, 3 warn, 4 info, 5 debug, 6 trace";
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem(format!("'{}' is not a log level", quoted(v)), fix));
    }
    match v.parse::<u32>() {
        Ok(n) if n <= 65535 => Ok(n.min(255) as u8),
        _ => Err(problem(format!("{} is out of range", quoted(v)), fix)),
    }
}

/// `-b`: a host or address; brackets around an IPv6 literal are dropped.
pub(crate) fn parse_bind_address(b: &str) -> Result<String, Problem> {
    check_host(b)?;
    let inner = b
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(b);
    if inner.is_empty() || inner.contains(['[', ']']) {
        return Err(problem(
            format!("'{}' is not a host name", quoted(b)),
            "give a host name or IP address, e.g. 0.0.0.0 or ::1",
        ));
    }
    // Digits and dots can only be an IPv4 address (no name is all digits), and a colon
    // only an IPv6 one: say so here rather than after a failed lookup and bind.
    if inner.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && inner.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(problem(
            format!("'{}' is not an IPv4 address", quoted(inner)),
            "give four numbers 0-255, e.g. 192.168.1.1, or a host name",
        ));
    }
    if inner.contains(':') && inner.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(problem(
            format!("'{}' is not an IPv6 address", quoted(inner)),
            "give an IPv6 address, e.g. ::1 or fe80::1",
        ));
    }
    Ok(inner.to_string())
}

/// Splits `host[:port]`, `[v6]` or `[v6]:port`. `port` is `None` when absent.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), Problem> {
    let fix_v6 = "write an IPv6 address in brackets, e.g. [::1]:443";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(problem("has an unclosed '['", fix_v6));
        };
        if host.is_empty() || !host.contains(':') {
            return Err(problem(
                "has brackets around something that is not an IPv6 address",
                fix_v6,
            ));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(problem("has text after ']'", fix_v6)),
            },
        }
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => {
                let (h, p) = s.split_once(':').unwrap_or((s, ""));
                (h, Some(p))
            }
            _ => return Err(problem("has more than one ':'", fix_v6)),
        }
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return Err(problem("has no host name", "give HOST or HOST:PORT"));
    }
    let port = match port {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    Ok((host.to_string(), port))
}

/// `-e host[:port]`: no scheme, no path; lowercased; port 443 unless given.
pub(crate) fn parse_endpoint(e: &str) -> Result<Endpoint, Problem> {
    let fix = "give host[:port] without wss:// or a path";
    if e.contains("://") || e.contains('/') {
        return Err(problem(
            format!("'{}' has a scheme or a path", quoted(e)),
            fix,
        ));
    }
    check_host(e).map_err(|(p, _)| (p, fix.to_string()))?;
    let (host, port) = split_host_port(e)?;
    Ok(Endpoint {
        host: host.to_ascii_lowercase(),
        port: port.unwrap_or(DEFAULT_ENDPOINT_PORT),
    })
}

/// A destination target: a Unix socket path (contains `/`), `host:port` (`[v6]:port`),
/// or a bare port on `default_host`; surrounding whitespace is ignored. The one parser
/// for `-d` and `--config-dir` values, at start-up and in the session.
pub(crate) fn parse_target(t: &str, default_host: &str) -> Result<Target, Problem> {
    let t = t.trim();
    if t.contains('/') {
        check_path(t)?;
        return Ok(Target::Unix(PathBuf::from(t)));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Target::Tcp {
            host: default_host.to_string(),
            port: parse_port(t)?,
        });
    }
    check_host(t)?;
    match split_host_port(t)? {
        (host, Some(port)) => Ok(Target::Tcp { host, port }),
        (_, None) => Err(problem(
            format!("'{}' has no port", quoted(t)),
            "give PORT, HOST:PORT or a Unix socket path",
        )),
    }
}

/// Splits `ID=value,ID=value` (items trimmed, empty items skipped), or returns `None`
/// when the text is a single unnamed value.
fn split_named(text: &str) -> Result<Option<Vec<(String, String)>>, Problem> {
    if !text.contains('=') {
        return Ok(None);
    }
    let mut items = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((id, v)) = item.split_once('=') else {
            return Err(problem(
                format!("item '{}' has no service id", quoted(item)),
                "write every item as ID=VALUE, e.g. SSH1=5555,SSH2=6666",
            ));
        };
        let (id, v) = (id.trim(), v.trim());
        check_service_id(id).map_err(|(p, f)| (format!("the service id {p}"), f))?;
        items.push((id.to_string(), v.to_string()));
    }
    if items.is_empty() {
        return Err(problem("is empty", "give PORT or ID=PORT,..."));
    }
    Ok(Some(items))
}

/// Refuses a service id given twice, as `-d 22 -d 23` is refused (the reference keeps
/// the first with a warning, which hides a typo until a connection goes to the wrong
/// port).
fn dedup(items: Vec<(String, String)>) -> Result<Vec<(String, String)>, Problem> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (id, v) in items {
        if out.iter().any(|(known, _)| *known == id) {
            return Err(problem(
                format!("service id {id} is given twice"),
                "give each service id once",
            ));
        }
        out.push((id, v));
    }
    Ok(out)
}

/// `-s`: `5555` or `SSH1=5555,SSH2=6666`.
pub(crate) fn parse_listen_mappings(text: &str) -> Result<Vec<Mapping>, Problem> {
    let single_fix = "give a port number; the listen address is set with -b";
    let items = match split_named(text)? {
        None => {
            let t: Vec<&str> = text
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .collect();
            let one = match t.as_slice() {
                [] => return Err(problem("is empty", "give a port from 1 to 65535")),
                [one] => *one,
                _ => {
                    return Err(problem(
                        "several ports need service ids",
                        "write ID=PORT for each, e.g. SSH1=5555,SSH2=6666",
                    ))
                }
            };
            if one.contains(':') {
                return Err(problem(
                    format!("'{}' is not a port", quoted(one)),
                    single_fix,
                ));
            }
            return Ok(vec![Mapping::Listen {
                service_id: String::new(),
                port: parse_port(one)?,
            }]);
        }
        Some(items) => dedup(items)?,
    };
    let mut out: Vec<Mapping> = Vec::new();
    for (id, v) in items {
        let port = parse_port(&v).map_err(|(p, f)| (format!("{id}: {p}"), f))?;
        if let Some(other) = out
            .iter()
            .find(|m| matches!(m, Mapping::Listen { port: q, .. } if *q == port))
        {
            return Err(problem(
                format!(
                    "port {port} is given to both {} and {id}",
                    other.service_id()
                ),
                "give each service its own port",
            ));
        }
        out.push(Mapping::Listen {
            service_id: id,
            port,
        });
    }
    Ok(out)
}

/// `-d`: `22`, `host:22`, `/run/app.sock`, or `ID=target,...`.
pub(crate) fn parse_connect_mappings(
    text: &str,
    default_host: &str,
) -> Result<Vec<Mapping>, Problem> {
    match split_named(text)? {
        None => Ok(vec![Mapping::Connect {
            service_id: String::new(),
            target: parse_target(text.trim(), default_host)?,
        }]),
        Some(items) => dedup(items)?
            .into_iter()
            .map(|(id, v)| {
                let target =
                    parse_target(&v, default_host).map_err(|(p, f)| (format!("{id}: {p}"), f))?;
                Ok(Mapping::Connect {
                    service_id: id,
                    target,
                })
            })
            .collect(),
    }
}

/// `true`/`false` the way Boost and the reference's JSON write them, plus the usual
/// shell spellings.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The deepest nesting of arrays and objects in a JSON text, counted outside strings;
/// stops counting once past `limit`. tinyjson parses recursively, so the settings file
/// and the notification document are checked with this before they reach it.
pub(crate) fn json_depth(doc: &[u8], limit: usize) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Target {
        Target::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn listen_mappings() {
        let l = |id: &str, port| Mapping::Listen {
            service_id: id.into(),
            port,
        };
        assert_eq!(parse_listen_mappings("5555").unwrap(), vec![l("", 5555)]);
        assert_eq!(parse_listen_mappings(" 5555 ,").unwrap(), vec![l("", 5555)]);
        assert_eq!(
            parse_listen_mappings("SSH1=5555,SSH2=6666").unwrap(),
            vec![l("SSH1", 5555), l("SSH2", 6666)]
        );
        assert_eq!(
            parse_listen_mappings(" SSH1 = 5555 , , SSH2=6666, ").unwrap(),
            vec![l("SSH1", 5555), l("SSH2", 6666)]
        );
        assert_eq!(
            parse_listen_mappings("SSH1=5555,SSH1=7777").unwrap_err().0,
            "service id SSH1 is given twice"
        );
        let bad = |t: &str| parse_listen_mappings(t).unwrap_err().0;
        assert!(bad("5555,6666").contains("several ports need service ids"));
        assert!(bad("SSH1=5555,6666").contains("has no service id"));
        assert!(bad("=5555").contains("service id is empty"));
        assert!(bad("SSH:1=5555").contains("not a service id"));
        assert!(bad(&format!("{}=1", "a".repeat(129))).contains("not a service id"));
        assert!(bad("SSH1=0").contains("SSH1: port 0 is out of range"));
        assert!(bad("A=5555,B=5555").contains("port 5555 is given to both A and B"));
        assert!(bad(",").contains("is empty"));
        assert!(parse_listen_mappings(&format!("{}=1", "a".repeat(128))).is_ok());
        assert!(parse_listen_mappings("a_b-C9=1").is_ok());
    }

    #[test]
    fn connect_mappings() {
        let c = |id: &str, target| Mapping::Connect {
            service_id: id.into(),
            target,
        };
        let p = |t: &str| parse_connect_mappings(t, "127.0.0.1");
        assert_eq!(p("22").unwrap(), vec![c("", tcp("127.0.0.1", 22))]);
        assert_eq!(p("host:22").unwrap(), vec![c("", tcp("host", 22))]);
        assert_eq!(p("10.0.0.1:80").unwrap(), vec![c("", tcp("10.0.0.1", 80))]);
        assert_eq!(p("[::1]:22").unwrap(), vec![c("", tcp("::1", 22))]);
        assert_eq!(
            p("/run/app.sock").unwrap(),
            vec![c("", Target::Unix("/run/app.sock".into()))]
        );
        assert_eq!(
            p("./app.sock").unwrap(),
            vec![c("", Target::Unix("./app.sock".into()))]
        );
        assert_eq!(
            p("SSH=host:22, WEB=80 ,SOCK=/run/a.sock").unwrap(),
            vec![
                c("SSH", tcp("host", 22)),
                c("WEB", tcp("127.0.0.1", 80)),
                c("SOCK", Target::Unix("/run/a.sock".into()))
            ]
        );
        assert_eq!(
            p("SSH=1,SSH=2").unwrap_err().0,
            "service id SSH is given twice"
        );
        assert!(p("host").unwrap_err().0.contains("has no port"));
        assert!(p("host:").unwrap_err().0.contains("not a port number"));
        assert!(p("a b:22").is_err());
        assert!(p("SSH=").is_err());
        assert!(p("SSH=host:x").unwrap_err().0.starts_with("SSH: "));
    }

    /// The one target parser, for `-d` and for `--config-dir` values in the session:
    /// what either accepted before, as long as it is valid.
    #[test]
    fn target_forms() {
        let t = |v: &str| parse_target(v, "10.0.0.9");
        assert_eq!(t("22"), Ok(tcp("10.0.0.9", 22)));
        assert_eq!(t("host:22"), Ok(tcp("host", 22)));
        assert_eq!(t("[::1]:22"), Ok(tcp("::1", 22)));
        assert_eq!(t("/run/a.sock"), Ok(Target::Unix("/run/a.sock".into())));
        // Surrounding whitespace is ignored, as the session's own parser did.
        assert_eq!(t(" 22\t"), Ok(tcp("10.0.0.9", 22)));
        assert_eq!(t(" localhost:8080 "), Ok(tcp("localhost", 8080)));
        assert_eq!(t(" /run/a.sock "), Ok(Target::Unix("/run/a.sock".into())));
        // Refused by the start-up rules, so never seen by the session either.
        for bad in [
            "", "0", "+22", "host", "host:0", ":22", "::1:22", "[::1]", "a b:22",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }
}
