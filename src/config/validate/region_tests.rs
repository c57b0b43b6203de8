//! `[[region]]`, `[geo]`, `region_split` and backend `region`: valid forms and every error with
//! its location.

use super::tests::{errors, parse, with};
use crate::config::RegionConfig;

const TWO_REGIONS: &str = r#"
[[listener]]
name = "web"
bind = "0.0.0.0:8080"
pool = "web"

[[pool]]
name = "web"
region_split = { us-east = 70, us-west = 30 }
backends = [
  { address = "10.0.1.10:80", region = "us-east" },
  { address = "10.0.2.10:80", region = "us-west" },
  { address = "10.0.3.10:80" },
]

[[region]]
name = "us-east"
cidrs = ["203.0.113.0/24", "10.1.2.3/16"]
countries = ["us", "CA"]
failover = ["us-west"]

[[region]]
name = "us-west"
cidrs = ["198.51.100.0/24"]
"#;

#[test]
fn regions_are_read_as_written() {
    let c = parse(TWO_REGIONS).expect("valid");
    assert_eq!(
        c.regions[0],
        RegionConfig {
            name: "us-east".into(),
            cidrs: vec![
                "203.0.113.0/24".parse().expect("net"),
                "10.1.0.0/16".parse().expect("net")
            ],
            countries: vec!["US".into(), "CA".into()],
            failover: vec!["us-west".into()],
        }
    );
    assert_eq!(c.regions[1].failover, Vec::<String>::new());
    let mut split = c.pools[0].region_split.clone();
    split.sort();
    assert_eq!(split, [("us-east".into(), 70), ("us-west".into(), 30)]);
    assert_eq!(c.geo.mmdb, None);
}

#[test]
fn region_errors_have_locations() {
    let text = TWO_REGIONS
        .replace("us-east = 70", "us-central = 70")
        .replace("us-west = 30", "us-west = 0")
        .replace("region = \"us-west\" }", "region = \"eu\" }")
        .replace(
            "failover = [\"us-west\"]",
            "failover = [\"us-east\", \"mars\"]",
        )
        .replace("countries = [\"us\"", "countries = [\"USA\"")
        .replace("\"198.51.100.0/24\"", "\"203.0.113.0/24\", \"nope\"");
    assert_eq!(
        errors(&text),
        [
            "fulcrum.toml:9:18: pool \"web\": region_split: us-central: no [[region]] named \"us-central\"",
            "fulcrum.toml:9:45: pool \"web\": region_split: us-west: must be > 0",
            "fulcrum.toml:12:40: pool \"web\": backend \"10.0.2.10:80\": region: no [[region]] named \"eu\" (when regions are defined, a backend's region must be one of them)",
            "fulcrum.toml:19:14: region \"us-east\": countries: \"USA\": must be a two-letter ISO 3166-1 country code such as \"US\", got \"USA\"",
            "fulcrum.toml:20:13: region \"us-east\": failover: must name other regions, not this one",
            "fulcrum.toml:20:24: region \"us-east\": failover: no region named \"mars\"",
            "fulcrum.toml:24:10: region \"us-west\": cidrs: \"203.0.113.0/24\": duplicate CIDR (regions must not share one) (first at line 18)",
            "fulcrum.toml:24:28: region \"us-west\": cidrs: \"nope\": must be a CIDR such as \"10.0.0.0/8\" or an IP, got \"nope\"",
        ]
    );
}

#[test]
fn duplicate_region_and_missing_name() {
    let e = errors(&with(
        "\n[[region]]\nname = \"a\"\n\n[[region]]\nname = \"a\"\n\n[[region]]\ncidrs = []\n",
    ));
    assert_eq!(
        e,
        [
            "fulcrum.toml:15:8: region \"a\": name: duplicate region name (first at line 12)",
            "fulcrum.toml:17:1: region #3: name: missing (required)",
        ]
    );
}

#[test]
fn backend_region_is_a_free_label_without_regions() {
    let c = parse(
        &TWO_REGIONS[..TWO_REGIONS.find("[[region]]").expect("regions")]
            .replace("region_split = { us-east = 70, us-west = 30 }\n", ""),
    )
    .expect("valid");
    assert_eq!(c.pools[0].backends[1].region.as_deref(), Some("us-west"));
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let text = MINIMAL_PP.replace("[global]\ntrusted_proxies = [\"10.0.0.0/8\"]\n", "");
    assert_eq!(
        errors(&text),
        ["fulcrum.toml:5:18: listener \"web\": proxy_protocol: PROXY headers are accepted from trusted_proxies only, and [global] trusted_proxies is empty"]
    );
    let c = parse(MINIMAL_PP).expect("valid");
    assert!(c.listeners[0].proxy_protocol);
}

const MINIMAL_PP: &str = "[global]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:8080\"\npool = \"web\"\nproxy_protocol = true\n[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n";

#[test]
fn mmdb_must_open() {
    let e = errors(&with("\n[geo]\nmmdb = \"/nonexistent/x.mmdb\"\n"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("fulcrum.toml:12:8: geo: mmdb: cannot open /nonexistent/x.mmdb as a MaxMind-format database:"),
        "{e:?}"
    );
    assert!(parse(&with("\n[geo]\nmmdb = \"\"\n")).is_ok());
}

/// A FIFO would block the read for ever and a device never end it: only regular files are
/// read (an error at once, at `check` as at reload).
#[cfg(unix)]
#[test]
fn mmdb_must_be_a_regular_file() {
    let e = errors(&with("\n[geo]\nmmdb = \"/dev/zero\"\n"));
    assert!(
        e[0].contains("/dev/zero") && e[0].contains("not a regular file"),
        "{e:?}"
    );
    let dir = tempfile::tempdir().expect("dir");
    let fifo = dir.path().join("geo.mmdb");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let e = errors(&with(&format!("\n[geo]\nmmdb = \"{}\"\n", fifo.display())));
        assert!(e[0].contains("not a regular file"), "{e:?}");
    }
}
