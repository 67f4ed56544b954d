//! Fuzz target: a `--settings-json` file (src/config/settings.rs) read over the
//! defaults. Checks: no panic and no stack overflow (the JSON parser recurses; deep
//! nesting must be refused first), an error is one line, and what was accepted writes
//! out (`--export-default-settings`'s writer) to a file that reads back to the same
//! settings without a warning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localproxy::fuzzing::settings_json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match settings_json(text) {
        Ok((settings, _warnings)) => {
            let written = settings.to_json();
            match settings_json(&written) {
                Ok((again, warnings)) => {
                    assert!(warnings.is_empty(), "{warnings:?} reading back {written}");
                    assert!(
                        again == settings,
                        "{written} reads back as {again:?}, not {settings:?}"
                    );
                }
                Err(e) => panic!("our own output does not read back: {e}\n{written}"),
            }
        }
        Err(e) => assert!(!e.contains('\n'), "a two-line error: {e:?}"),
    }
});
