//! Fuzz target: a `--notification` document (src/config/notification.rs), then the
//! whole validation as the device agent's `localproxy --notification FILE --check -d
//! ...` runs it, with one of three `-d` mappings picked by the document's length.
//! Checks: no panic and no stack overflow (deep nesting is refused before the recursive
//! JSON parser), an error is one line, and no error, warning or `--check` text shows the
//! document's access token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localproxy::fuzzing::notification;
use tinyjson::JsonValue;

/// Every string in the document, keys too.
fn strings<'a>(v: &'a JsonValue, out: &mut Vec<&'a str>) {
    match v {
        JsonValue::String(s) => out.push(s),
        JsonValue::Array(a) => a.iter().for_each(|x| strings(x, out)),
        JsonValue::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k);
            strings(x, out)
        }),
        _ => {}
    }
}

fuzz_target!(|doc: &[u8]| {
    let cli: &[&str] = match doc.len() % 3 {
        0 => &["-d", "22"],
        1 => &["-d", "SSH=22,HTTP=80"],
        _ => &["-d", "SSH=127.0.0.1:22", "-v", "6"],
    };
    let c = notification(doc, cli);
    let mut shown = c.warnings.clone();
    match &c.result {
        Ok(describe) => shown.push(describe.clone()),
        Err(e) => {
            assert!(!e.contains('\n'), "a two-line error: {e:?}");
            shown.push(e.clone());
        }
    }
    // The token is known once the document passed; a token that is also another string
    // of the document (the region, say, which an error quotes) or a short word proves
    // nothing.
    // Real tokens are long runs of letters, digits, - and _; a shorter one, or one with
    // spaces, dots or '=', can be a piece of --check's own text ("-verify = false").
    let token_like = |t: &str| {
        t.len() >= 32
            && t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let Some(token) = c.access_token.filter(|t| token_like(t)) else {
        return;
    };
    // parse() accepted the document, so it is shallow enough for tinyjson.
    let root: JsonValue = std::str::from_utf8(doc).unwrap().parse().unwrap();
    let mut all = Vec::new();
    strings(&root, &mut all);
    // Only the token's own value may hold it (a service named like it is quoted).
    if all.iter().filter(|s| s.contains(token.as_str())).count() > 1 {
        return;
    }
    for s in &shown {
        assert!(!s.contains(&token), "the access token is shown: {s}");
    }
});
