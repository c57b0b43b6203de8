//! The admin request handler: any method, path, headers and body get an answer, never a
//! panic, and a request without the right bearer token never gets a 2xx for anything but the
//! static page and its files.
//!
//! Input: one flag byte (bit 0: add the right token, bit 1: add a wrong one first), then
//! `method \n path \n header lines "name: value" \n \n body`. Inputs that `http` cannot make
//! into a request (an invalid method, URI or header) are skipped: hyper would reject them
//! before the handler sees them.
#![no_main]

use std::sync::OnceLock;

use fulcrum::internals::{AdminHarness, ADMIN_TOKEN};
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;

fn harness() -> &'static AdminHarness {
    static HARNESS: OnceLock<AdminHarness> = OnceLock::new();
    HARNESS.get_or_init(|| AdminHarness::new().expect("the harness builds"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let Ok(method) = Method::from_bytes(lines.next().unwrap_or(b"GET")) else {
        return;
    };
    let Ok(uri) = http::Uri::try_from(lines.next().unwrap_or(b"/")) else {
        return;
    };
    let mut req = Request::new(body.to_vec());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    if flags & 2 != 0 {
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
    }
    if flags & 1 != 0 {
        let token = format!("Bearer {ADMIN_TOKEN}");
        headers.append(AUTHORIZATION, HeaderValue::from_str(&token).expect("a valid value"));
    }
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let authorized = req
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == format!("Bearer {ADMIN_TOKEN}").as_bytes());
    let public = AdminHarness::is_public(req.method(), req.uri().path());
    let status = harness().status(req);
    assert!((100..600).contains(&status), "status {status}");
    if !authorized && !public {
        assert!(
            !(200..300).contains(&status),
            "an unauthenticated request got {status}"
        );
    }
});
