//! The PROXY header reader (v1 text, v2 binary): any bytes are a source address, "none" or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = fulcrum::internals::proxy_source(data) {
        drop(e.to_string());
    }
});
