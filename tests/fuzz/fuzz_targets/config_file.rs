//! Fuzz target: a `--config` file (src/config/files.rs) through the whole validation,
//! as `localproxy --config FILE --check` runs it with nothing else given; the same text
//! is read as a `--config-dir` file too. Checks: no panic, an error is one line, and
//! neither the error nor `--check`'s text ever shows the file's access token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localproxy::fuzzing::config_file;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = config_file(text);
    let shown = match &c.result {
        Ok(describe) => describe.clone(),
        Err(e) => {
            assert!(!e.contains('\n'), "a two-line error: {e:?}");
            e.clone()
        }
    };
    // A token that could be a piece of the messages or of --check's text (short, or
    // with spaces, dots or '=': "-verify = false" is in "no-ssl-host-verify = false"),
    // or that is also written elsewhere in the file (say as the region, which an error
    // quotes), proves nothing. Real tokens are long runs of letters, digits, - and _.
    let token_like = |t: &str| {
        t.len() >= 32
            && t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if let Some(t) = c
        .access_token
        .filter(|t| token_like(t) && text.matches(t.as_str()).count() == 1)
    {
        assert!(!shown.contains(&t), "the access token is shown: {shown}");
        // The same line read as a --config-dir mapping is a service id and its value,
        // which that warning quotes: the text is no token there.
        for w in c.warnings.iter().filter(|w| !w.starts_with("--config-dir")) {
            assert!(!w.contains(&t), "the access token is in a warning: {w}");
        }
    }
});
