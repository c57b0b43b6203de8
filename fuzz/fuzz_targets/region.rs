//! The region lookup input. The first byte picks the mode:
//! - even: the rest is an address (4 bytes IPv4, 16 bytes IPv6; other lengths are cut or
//!   padded) looked up in a table built from a small fixed config, the answer checked against
//!   a linear scan of its prefixes;
//! - odd: the rest is text placed as a CIDR in `[[region]] cidrs`, through config validation;
//!   a config that passes builds its table, and the network's own address is looked up.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use fulcrum::config::{GeoConfig, RegionConfig};
use fulcrum::internals::Regions;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

const CIDRS: [(&str, &[&str]); 3] = [
    (
        "a",
        &["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "0.0.0.0/0"],
    ),
    (
        "b",
        &[
            "10.1.0.0/16",
            "192.0.2.128/25",
            "2001:db8:1::/48",
            "::ffff:0:0/96",
        ],
    ),
    ("c", &["10.1.2.3/32", "fe80::/10", "2001:db8:1:2::1/128"]),
];

fn fixed() -> &'static (Vec<RegionConfig>, Regions) {
    static TABLE: OnceLock<(Vec<RegionConfig>, Regions)> = OnceLock::new();
    TABLE.get_or_init(|| {
        let configs: Vec<RegionConfig> = CIDRS
            .iter()
            .map(|(name, cidrs)| RegionConfig {
                name: (*name).to_string(),
                cidrs: cidrs
                    .iter()
                    .map(|c| c.parse().expect("fixed CIDR"))
                    .collect(),
                ..Default::default()
            })
            .collect();
        let regions = Regions::build(&configs, &GeoConfig::default()).expect("fixed table");
        (configs, regions)
    })
}

fn address(bytes: &[u8]) -> IpAddr {
    if bytes.len() <= 4 {
        let mut b = [0u8; 4];
        b[..bytes.len()].copy_from_slice(bytes);
        IpAddr::V4(Ipv4Addr::from(b))
    } else {
        let mut b = [0u8; 16];
        let n = bytes.len().min(16);
        b[..n].copy_from_slice(&bytes[..n]);
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

/// The region of the longest prefix containing `ip` (canonical form), by scanning.
fn scan(configs: &[RegionConfig], ip: IpAddr) -> Option<String> {
    let ip = ip.to_canonical();
    let mut best: Option<(u8, &str)> = None;
    for r in configs {
        for net in &r.cidrs {
            if net.contains(&ip) && best.is_none_or(|(len, _)| net.prefix_len() > len) {
                best = Some((net.prefix_len(), &r.name));
            }
        }
    }
    best.map(|(_, name)| name.to_string())
}

/// `text` as a TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let (configs, regions) = fixed();
        let ip = address(rest);
        let found = regions
            .lookup(ip)
            .and_then(|id| regions.name(id))
            .map(|n| n.to_string());
        assert_eq!(found, scan(configs, ip), "lookup of {ip}");
        if let Some(id) = regions.lookup_cidr(ip.to_canonical()) {
            assert!(!regions.order(id).is_empty());
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let toml = format!(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\npool = \"p\"\n\n\
         [[pool]]\nname = \"p\"\nbackends = [{{ address = \"127.0.0.1:1\", region = \"r\" }}]\n\n\
         [[region]]\nname = \"r\"\ncidrs = [{}]\n",
        quoted(text)
    );
    let Ok(config) = fulcrum::Config::from_toml(&toml, Path::new("/nonexistent/fuzz.toml")) else {
        return;
    };
    // What validation accepted must parse as a network and build.
    let net: IpNet = match text.trim().parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.trim().parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return, // another accepted spelling: nothing to compare
        },
    };
    let regions = Regions::build(&config.regions, &config.geo).expect("validated regions build");
    let _ = regions.lookup(net.addr());
    let _ = regions.lookup(net.network());
    let _ = regions.lookup(net.broadcast());
});
