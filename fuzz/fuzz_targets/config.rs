//! The config loader: any text, parsed and validated, is a config or a list of errors, never a
//! panic. The path is a folder that does not exist, so relative file names in the text resolve
//! to nothing.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent-fulcrum-fuzz/fuzz.toml");
    match fulcrum::Config::from_toml(text, path) {
        // Messages are rendered as `check` prints them: formatting must not panic either.
        Ok(config) => drop(format!("{config:?}")),
        Err(errors) => drop(errors.to_string()),
    }
});
