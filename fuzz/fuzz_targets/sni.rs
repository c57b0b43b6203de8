//! The ClientHello reader of TLS passthrough (`sni::parse`): any first bytes of a connection
//! are a server name, "no name" or a request for more bytes, never a panic; and it asks for
//! more only while the record is incomplete, never past one record.
#![no_main]

use fulcrum::internals::{sni_parse, SniParsed, SNI_MAX_RECORD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match sni_parse(data) {
        SniParsed::NeedMore(n) => {
            assert!(n > data.len(), "asked for {n} with {} at hand", data.len());
            assert!(n <= SNI_MAX_RECORD, "asked for {n}");
        }
        SniParsed::Done(hello) => drop(hello),
    }
});
