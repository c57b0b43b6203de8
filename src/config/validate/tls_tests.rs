//! `[listener.tls]` and `redirect_https`: read as written (paths relative to the config's
//! folder, defaults), and every bad value or combination reported at its key. The files are
//! not read here (`crate::tls` does, at check, start and reload).

use std::path::Path;

use super::tests::{errors, parse};
use crate::config::{ClientAuth, TlsVersion};

/// A listener "web" (line 1), `extra` keys of the listener (line 6), then its TLS table.
fn with_tls(protocol: &str, extra: &str, tls: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:8443\"\nprotocol = \"{protocol}\"\npool = \"web\"\n{extra}\n\
         [listener.tls]\n{tls}\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ address = \"10.0.0.1:80\" }}]\n"
    )
}

const CERTS: &str =
    "certs = [{ cert = \"a.pem\", key = \"/etc/k/a.key\" }, { cert = \"b.pem\", key = \"b.key\" }]";

#[test]
fn tls_is_read_as_written_with_defaults() {
    let c = parse(&with_tls("http", "", CERTS)).expect("valid");
    let tls = c.listeners[0].tls.as_ref().expect("tls");
    assert_eq!(tls.certs.len(), 2);
    assert_eq!(
        tls.certs[0].cert.path,
        Path::new("a.pem"),
        "relative to the config's folder (here: none)"
    );
    assert_eq!(tls.certs[0].key.path, Path::new("/etc/k/a.key"));
    assert_eq!(tls.certs[0].cert.origin.line, 8);
    assert_eq!(
        tls.certs[0].cert.origin.key,
        "listener \"web\": tls: certs #1: cert"
    );
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert_eq!(tls.client_auth, ClientAuth::Off);
    assert_eq!(tls.client_ca, None);
    assert_eq!(tls.hsts, None);
    assert!(!c.listeners[0].redirect_https);
    let all = format!("{CERTS}\nmin_version = \"1.3\"\nclient_auth = \"required\"\nclient_ca = \"ca.pem\"\nhsts = \"max-age=31536000; includeSubDomains; preload\"");
    let c = parse(&with_tls("http", "", &all)).expect("valid");
    let tls = c.listeners[0].tls.as_ref().expect("tls");
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert_eq!(tls.client_auth, ClientAuth::Required);
    assert_eq!(
        tls.client_ca.as_ref().expect("ca").path,
        Path::new("ca.pem")
    );
    assert_eq!(
        tls.hsts.as_deref(),
        Some("max-age=31536000; includeSubDomains; preload")
    );
    // A tcp listener terminates TLS too.
    assert!(
        parse(&with_tls("tcp", "", CERTS)).expect("valid").listeners[0]
            .tls
            .is_some()
    );
    // Every file is watched.
    assert_eq!(c.watched_files().len(), 6, "{:?}", c.watched_files());
}

#[test]
fn tls_errors_name_their_key() {
    let bad = "certs = [{ cert = \"\" }]\nmin_version = \"1.1\"\nclient_auth = \"sometimes\"\nhsts = \"1 year\"";
    assert_eq!(
        errors(&with_tls("http", "", bad)),
        [
            "fulcrum.toml:8:10: listener \"web\": tls: certs #1: key: missing (required)",
            "fulcrum.toml:8:19: listener \"web\": tls: certs #1: cert: must name a file",
            "fulcrum.toml:9:15: listener \"web\": tls: min_version: expected \"1.2\" or \"1.3\" (got \"1.1\"; older versions are not offered)",
            "fulcrum.toml:10:15: listener \"web\": tls: client_auth: expected \"off\", \"optional\" or \"required\" (got \"sometimes\")",
            "fulcrum.toml:11:8: listener \"web\": tls: hsts: expected \"max-age=SECONDS\" first, e.g. \"max-age=31536000\" (got \"1 year\")",
        ]
    );
    let errs = errors(&with_tls("http", "", "certs = []"));
    assert_eq!(errs, ["fulcrum.toml:8:9: listener \"web\": tls: certs: at least one { cert, key } is required"]);
    let errs = errors(&with_tls("http", "", "min_version = \"1.2\""));
    assert!(
        errs[0].starts_with("fulcrum.toml:7:1: listener \"web\": tls: certs: missing (required)"),
        "{errs:#?}"
    );
}

#[test]
fn client_auth_needs_a_ca_and_a_ca_needs_client_auth() {
    let errs = errors(&with_tls(
        "http",
        "",
        &format!("{CERTS}\nclient_auth = \"optional\""),
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("fulcrum.toml:9:15: listener \"web\": tls: client_ca: missing"),
        "{errs:#?}"
    );
    let errs = errors(&with_tls(
        "http",
        "",
        &format!("{CERTS}\nclient_ca = \"ca.pem\""),
    ));
    assert!(errs[0].starts_with("fulcrum.toml:9:13: listener \"web\": tls: client_ca: has no effect with client_auth = \"off\""), "{errs:#?}");
}

#[test]
fn redirect_https_is_for_plain_http_listeners_and_hsts_for_http() {
    let plain = "[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:80\"\npool = \"web\"\nredirect_https = true\n\
                 [[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n";
    assert!(parse(plain).expect("valid").listeners[0].redirect_https);
    let errs = errors(&with_tls("http", "redirect_https = true", CERTS));
    assert!(errs[0].starts_with("fulcrum.toml:6:18: listener \"web\": redirect_https: a TLS listener would redirect to itself"), "{errs:#?}");
    let errs = errors(&with_tls(
        "tcp",
        "",
        &format!("{CERTS}\nhsts = \"max-age=60\""),
    ));
    assert!(
        errs[0].starts_with(
            "fulcrum.toml:9:8: listener \"web\": tls: hsts: only for protocol = \"http\""
        ),
        "{errs:#?}"
    );
}

const ACME: &str = "acme = { domains = [\"WWW.example.com\"], email = \"ops@example.com\", directory = \"https://acme.example/dir\" }";

/// A plain http listener "plain" appended, so ACME has somewhere to answer HTTP-01.
fn with_plain(text: &str) -> String {
    format!("{text}[[listener]]\nname = \"plain\"\nbind = \"0.0.0.0:80\"\npool = \"web\"\n")
}

#[test]
fn acme_needs_no_certs_and_keeps_its_files_under_state_dir() {
    let text = format!(
        "[global]\nstate_dir = \"/srv/fulcrum\"\n{}",
        with_plain(&with_tls("http", "", ACME))
    );
    let c = parse(&text).expect("valid");
    let tls = c.listeners[0].tls.as_ref().expect("tls");
    assert!(tls.certs.is_empty());
    let acme = tls.acme.as_ref().expect("acme");
    assert_eq!(acme.domains, ["www.example.com"]);
    assert_eq!(acme.directory, "https://acme.example/dir");
    let issued = tls.issued.as_ref().expect("issued files");
    assert_eq!(issued.cert.path, Path::new("/srv/fulcrum/acme/web.crt"));
    assert_eq!(issued.key.path, Path::new("/srv/fulcrum/acme/web.key"));
}

#[test]
fn acme_refuses_bad_values_and_a_file_without_a_plain_http_listener() {
    let bad = "acme = { domains = [\"*.example.com\", \"localhost\"], email = \"nope\", directory = \"http://acme.example/dir\" }";
    let errs = errors(&with_plain(&with_tls("http", "", bad)));
    for expected in [
        "domains: \"*.example.com\": wildcard names need a DNS-01 challenge",
        "domains: \"localhost\" is not a DNS name",
        "email: \"nope\" is not an email address",
        "directory: \"http://acme.example/dir\": the directory must be an https:// URL",
    ] {
        assert!(
            errs.iter().any(|e| e.contains(expected)),
            "{expected:?} not in {errs:?}"
        );
    }
    let errs = errors(&with_tls("http", "", ACME));
    assert!(
        errs.iter()
            .any(|e| e.contains("listener \"web\": tls: acme: needs a plain http listener")),
        "{errs:?}"
    );
    let errs = errors(&with_tls("http", "", "min_version = \"1.2\""));
    assert!(
        errs.iter()
            .any(|e| e.contains("at least one { cert, key }, or acme")),
        "{errs:?}"
    );
}
