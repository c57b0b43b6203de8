//! `[gslb]` and `[[region]] vips`.
//!
//! Rules: `vips` are IP addresses (v4 or v6), each once per region; they are read whenever
//! they are written, and required only with `[gslb]`. With `[gslb]`: at least one `[[region]]`
//! and every region has a vip (any region can be in an answer: the querier's own, a failover,
//! a split); `zone` is required, a DNS name; `records` lists at least one name, each inside the
//! zone (or the zone itself), once, with at least one pool, each an existing pool; `ns` and
//! `hostmaster` are DNS names; `ttl` is 1 s to 1 day; `bind` is an `ip:port`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use toml::Spanned;

use super::{key, label, values, Cx, Msg};
use crate::config::file::RawRegion;
use crate::config::gslb::{RawGslb, DEFAULT_GSLB_BIND, DEFAULT_GSLB_TTL};
use crate::config::{GslbConfig, GslbRecord, PoolConfig, PoolId, RegionConfig};

impl Cx<'_> {
    /// `[gslb]` with the regions' vips; `None` when the table is absent.
    pub(super) fn gslb(
        &mut self,
        raw: Option<&Spanned<RawGslb>>,
        raw_regions: &[Spanned<RawRegion>],
        pools: &[PoolConfig],
        regions: &[RegionConfig],
    ) -> Option<GslbConfig> {
        let vips = self.vips(raw_regions);
        let table = raw?;
        let g = table.get_ref();
        if regions.is_empty() {
            self.error(
                table.span(),
                "gslb",
                "needs at least one [[region]] (with vips) to answer with",
            );
        }
        for (i, (r, v)) in raw_regions.iter().zip(&vips).enumerate() {
            if v.is_empty() {
                let prefix = label("region", r.get_ref().name.as_ref(), i);
                self.error(
                    r.span(),
                    &key(&prefix, "vips"),
                    "missing: with [gslb], every region needs its public addresses (vips)",
                );
            }
        }
        let bind = self.opt_str(
            g.bind.as_ref(),
            "gslb: bind",
            DEFAULT_GSLB_BIND.parse().ok(),
            |t| values::socket_addr(t).map(Some),
        );
        let ttl = self.opt_str(g.ttl.as_ref(), "gslb: ttl", DEFAULT_GSLB_TTL, |t| {
            values::duration_in(t, Duration::from_secs(1), Duration::from_secs(86_400))
        });
        let zone = self.req_str(g.zone.as_ref(), table.span(), "gslb: zone", dns_name);
        let zone_text = zone.clone().unwrap_or_default();
        let ns = match &g.ns {
            None => vec![format!("ns1.{zone_text}")],
            Some(list) => list
                .iter()
                .filter_map(|n| {
                    self.check_str(n, &format!("gslb: ns: {:?}", n.get_ref()), dns_name)
                })
                .collect(),
        };
        if g.ns.as_ref().is_some_and(Vec::is_empty) {
            self.error(
                table.span(),
                "gslb: ns",
                "must name at least one name server",
            );
        }
        let hostmaster = self.opt_str(
            g.hostmaster.as_ref(),
            "gslb: hostmaster",
            format!("hostmaster.{zone_text}"),
            dns_name,
        );
        let records = self.gslb_records(g, zone.as_deref(), table.span(), pools, regions);
        Some(GslbConfig {
            bind: bind.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 53))),
            ttl,
            zone: zone_text,
            ns,
            hostmaster,
            records,
            vips,
        })
    }

    /// `records = [...]`: names inside the zone, once each, over existing pools.
    fn gslb_records(
        &mut self,
        g: &RawGslb,
        zone: Option<&str>,
        table: std::ops::Range<usize>,
        pools: &[PoolConfig],
        regions: &[RegionConfig],
    ) -> Vec<GslbRecord> {
        let Some(list) = &g.records else {
            self.error(
                table,
                "gslb: records",
                "missing (required): the names to answer",
            );
            return Vec::new();
        };
        if list.get_ref().is_empty() {
            self.error(list.span(), "gslb: records", "must list at least one name");
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut records = Vec::new();
        for (i, r) in list.get_ref().iter().enumerate() {
            let raw = r.get_ref();
            let prefix = format!("gslb: {}", label("record", raw.name.as_ref(), i));
            let name = self.req_str(raw.name.as_ref(), r.span(), &key(&prefix, "name"), dns_name);
            if let (Some(name), Some(v), Some(zone)) = (&name, &raw.name, zone) {
                if !in_zone(name, zone) {
                    let msg = format!("{name:?} is not inside the zone {zone:?}");
                    self.error(v.span(), &key(&prefix, "name"), msg);
                } else {
                    self.unique(
                        &mut seen,
                        name.clone(),
                        v.span(),
                        &key(&prefix, "name"),
                        "record name",
                    );
                }
            }
            let mut ids: Vec<PoolId> = Vec::new();
            match &raw.pools {
                None => self.error(r.span(), &key(&prefix, "pools"), "missing (required)"),
                Some(list) if list.is_empty() => self.error(
                    r.span(),
                    &key(&prefix, "pools"),
                    "must name at least one pool",
                ),
                Some(list) => {
                    for p in list {
                        match pools.iter().position(|pc| pc.name == *p.get_ref()) {
                            Some(id) => ids.push(PoolId::new(id)),
                            None => {
                                let msg = format!("no pool named {:?}", p.get_ref());
                                self.error(p.span(), &key(&prefix, "pools"), msg);
                            }
                        }
                    }
                }
            }
            let split = ids
                .first()
                .and_then(|id| pools.get(id.index()))
                .map(|pc| {
                    pc.region_split
                        .iter()
                        .filter_map(|(r, w)| Some((regions.iter().position(|x| x.name == *r)?, *w)))
                        .collect()
                })
                .unwrap_or_default();
            records.push(GslbRecord {
                name: name.unwrap_or_default(),
                pools: ids,
                split,
            });
        }
        records
    }

    /// Every region's `vips`, in region order (empty where absent or bad).
    fn vips(&mut self, raw: &[Spanned<RawRegion>]) -> Vec<Vec<IpAddr>> {
        raw.iter()
            .enumerate()
            .map(|(i, r)| {
                let prefix = label("region", r.get_ref().name.as_ref(), i);
                let mut seen: HashMap<IpAddr, usize> = HashMap::new();
                let mut out = Vec::new();
                for v in r.get_ref().vips.iter().flatten() {
                    let k = key(&prefix, &format!("vips: {:?}", v.get_ref()));
                    if let Some(ip) = self.check_str(v, &k, vip) {
                        if self.unique(&mut seen, ip, v.span(), &k, "vip") {
                            out.push(ip);
                        }
                    }
                }
                out
            })
            .collect()
    }
}

/// A vip: one IP address, v4 or v6, not a network and not a port.
fn vip(text: &str) -> Result<IpAddr, Msg> {
    text.parse().map_err(|_| {
        format!("must be an IP address such as \"203.0.113.10\" or \"2001:db8::10\", got {text:?}")
    })
}

/// A DNS name of letters, digits and `-` (and `_`) labels, 1-63 bytes each, 253 in all;
/// lower-cased, the trailing dot removed.
fn dns_name(text: &str) -> Result<String, Msg> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "must be a DNS name such as \"www.example.com\" (labels of letters, digits and \"-\"), got {text:?}"
        ));
    }
    Ok(name)
}

/// `name` is `zone` or below it.
fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|head| head.ends_with('.'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const BASE: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "web"

[[pool]]
name = "web"
backends = [{ address = "127.0.0.1:1", region = "east" }]
region_split = { east = 70, west = 30 }

[[region]]
name = "east"
cidrs = ["10.1.0.0/16"]
failover = ["west"]
vips = ["203.0.113.10", "2001:db8::10"]

[[region]]
name = "west"
cidrs = ["10.2.0.0/16"]
vips = ["198.51.100.10"]
"#;

    fn check(extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{BASE}{extra}"), Path::new("f.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_table_is_resolved() {
        let c = check(
            "[gslb]\nbind = \"127.0.0.1:5353\"\nttl = \"10s\"\nzone = \"Example.COM.\"\nrecords = [{ name = \"www.example.com\", pools = [\"web\"] }]\n",
        )
        .unwrap();
        let g = c.gslb.unwrap();
        assert_eq!(g.bind.to_string(), "127.0.0.1:5353");
        assert_eq!(g.ttl.as_secs(), 10);
        assert_eq!(g.zone, "example.com");
        assert_eq!(g.ns, vec!["ns1.example.com".to_string()]);
        assert_eq!(g.hostmaster, "hostmaster.example.com");
        assert_eq!(g.records[0].pools[0].index(), 0);
        assert_eq!(g.records[0].split, vec![(0, 70), (1, 30)]);
        assert_eq!(g.vips[0].len(), 2);
        assert_eq!(g.vips[1][0].to_string(), "198.51.100.10");
    }

    #[test]
    fn defaults() {
        let g = check("[gslb]\nzone = \"example.com\"\nrecords = [{ name = \"example.com\", pools = [\"web\"] }]\n")
            .unwrap()
            .gslb
            .unwrap();
        assert_eq!(g.bind.to_string(), "0.0.0.0:53");
        assert_eq!(g.ttl.as_secs(), 30);
    }

    #[test]
    fn every_problem_has_its_line_and_key() {
        let e = check(
            "[gslb]\nttl = \"0s\"\nbind = \"nowhere\"\nns = [\"bad name\"]\nrecords = [\n { name = \"www.other.org\", pools = [\"web\"] },\n { name = \"a.example.com\", pools = [\"nope\"] },\n { name = \"a.example.com\", pools = [] },\n]\nzone = \"example.com\"\n",
        )
        .unwrap_err();
        for want in [
            "gslb: ttl: must be between",
            "gslb: bind:",
            "gslb: ns: \"bad name\": must be a DNS name",
            "gslb: record \"www.other.org\": name: \"www.other.org\" is not inside the zone",
            "gslb: record \"a.example.com\": pools: no pool named \"nope\"",
            "gslb: record \"a.example.com\": name: duplicate record name",
            "gslb: record \"a.example.com\": pools: must name at least one pool",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
        assert!(e.contains("f.toml:23:7: gslb: ttl"), "{e}");
    }

    #[test]
    fn vips_must_parse_and_every_region_needs_one() {
        let text = BASE.replace("vips = [\"198.51.100.10\"]", "vips = [\"198.51.100.0/24\"]");
        let e = Config::from_toml(
            &format!("{text}[gslb]\nzone = \"example.com\"\nrecords = [{{ name = \"www.example.com\", pools = [\"web\"] }}]\n"),
            Path::new("f.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("region \"west\": vips: \"198.51.100.0/24\": must be an IP address"),
            "{e}"
        );
        assert!(
            e.contains("region \"west\": vips: missing: with [gslb]"),
            "{e}"
        );
        let e = check("[gslb]\nrecords = []\n").unwrap_err();
        assert!(e.contains("gslb: zone: missing (required)"), "{e}");
        assert!(
            e.contains("gslb: records: must list at least one name"),
            "{e}"
        );
    }

    #[test]
    fn vips_without_gslb_are_checked_but_harmless() {
        let c = check("").unwrap();
        assert!(c.gslb.is_none());
        let text = BASE.replace("\"203.0.113.10\"", "\"not-an-ip\"");
        assert!(Config::from_toml(&text, Path::new("f.toml")).is_err());
    }
}
