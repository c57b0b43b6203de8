//! The HTTP/1 engine's request and response head parsers and its chunked decoder (issue 17):
//! any bytes are a head, a refusal or "more", never a panic; the invariants the engine relies
//! on are checked inside (`http1::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fulcrum::internals::http1_head_and_framing(data);
});
