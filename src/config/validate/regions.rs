//! `[[region]]`, `[geo]`, and the references to regions from pools (`region_split`) and
//! backends (`region`).
//!
//! Rules: region names are unique; a CIDR belongs to one region only; countries are ISO 3166-1
//! alpha-2 codes (upper-cased here); `failover` names other defined regions, each once. When any
//! region is defined, a backend's `region` must name one of them (a typo would silently put the
//! backend in no region); with no `[[region]]` at all, `region` is a free label kept for the
//! access log. `region_split` always names defined regions, with weights > 0. `[geo] mmdb` must
//! open as a MaxMind-format database; a relative path is taken from the config file's folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use toml::Spanned;

use super::{key, label, values, Cx};
use crate::config::file::{RawGeo, RawPool, RawRegion};
use crate::config::files::{read_bounded, MAX_MMDB_BYTES};
use crate::config::{GeoConfig, PoolConfig, RegionConfig};

impl Cx<'_> {
    /// Every `[[region]]`, with unique names, disjoint CIDRs and valid failover lists.
    pub(super) fn regions(&mut self, raw: &[Spanned<RawRegion>]) -> Vec<RegionConfig> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut nets: HashMap<IpNet, usize> = HashMap::new();
        let mut regions = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let raw_region = r.get_ref();
            let prefix = label("region", raw_region.name.as_ref(), i);
            let name = self.req_str(
                raw_region.name.as_ref(),
                r.span(),
                &key(&prefix, "name"),
                values::name,
            );
            if let (Some(name), Some(v)) = (&name, &raw_region.name) {
                self.unique(
                    &mut names,
                    name.clone(),
                    v.span(),
                    &key(&prefix, "name"),
                    "region name",
                );
            }
            let mut cidrs = Vec::new();
            for c in raw_region.cidrs.iter().flatten() {
                let k = key(&prefix, &format!("cidrs: {:?}", c.get_ref()));
                if let Some(net) = self.check_str(c, &k, values::cidr) {
                    if self.unique(
                        &mut nets,
                        net,
                        c.span(),
                        &k,
                        "CIDR (regions must not share one)",
                    ) {
                        cidrs.push(net);
                    }
                }
            }
            let countries = raw_region
                .countries
                .iter()
                .flatten()
                .filter_map(|c| {
                    let k = key(&prefix, &format!("countries: {:?}", c.get_ref()));
                    self.check_str(c, &k, country)
                })
                .collect();
            regions.push(RegionConfig {
                name: name.unwrap_or_default(),
                cidrs,
                countries,
                failover: Vec::new(),
            });
        }
        // Failover lists, once every name is known.
        for (i, r) in raw.iter().enumerate() {
            let prefix = label("region", r.get_ref().name.as_ref(), i);
            let mut seen: HashMap<String, usize> = HashMap::new();
            let mut failover = Vec::new();
            for f in r.get_ref().failover.iter().flatten() {
                let k = key(&prefix, "failover");
                let target = f.get_ref();
                if *target == regions[i].name {
                    self.error(f.span(), &k, "must name other regions, not this one");
                } else if !names.contains_key(target) {
                    self.error(f.span(), &k, format!("no region named {target:?}"));
                } else if self.unique(&mut seen, target.clone(), f.span(), &k, "failover region") {
                    failover.push(target.clone());
                }
            }
            regions[i].failover = failover;
        }
        regions
    }

    /// `[geo]`: the mmdb, when set, must open.
    pub(super) fn geo(&mut self, raw: Option<&Spanned<RawGeo>>, config: &Path) -> GeoConfig {
        let Some(v) = raw.and_then(|g| g.get_ref().mmdb.as_ref()) else {
            return GeoConfig::default();
        };
        if v.get_ref().is_empty() {
            return GeoConfig::default();
        }
        let path = resolve(config, v.get_ref());
        let opened = read_bounded(&path, MAX_MMDB_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|bytes| maxminddb::Reader::from_source(bytes).map_err(|e| e.to_string()));
        match opened {
            Ok(_) => GeoConfig { mmdb: Some(path) },
            Err(e) => {
                self.error(
                    v.span(),
                    "geo: mmdb",
                    format!(
                        "cannot open {} as a MaxMind-format database: {e}",
                        path.display()
                    ),
                );
                GeoConfig::default()
            }
        }
    }

    /// Pools' `region_split` and backends' `region` against the defined regions.
    pub(super) fn region_refs(
        &mut self,
        raw: &[Spanned<RawPool>],
        pools: &mut [PoolConfig],
        regions: &[RegionConfig],
    ) {
        let defined = |name: &str| regions.iter().any(|r| r.name == name);
        for (i, (p, pool)) in raw.iter().zip(pools.iter_mut()).enumerate() {
            let prefix = label("pool", p.get_ref().name.as_ref(), i);
            if let Some(split) = &p.get_ref().region_split {
                let k = key(&prefix, "region_split");
                if split.get_ref().is_empty() {
                    self.error(split.span(), &k, "must name at least one region");
                }
                for (name, weight) in split.get_ref() {
                    let k = key(&prefix, &format!("region_split: {}", name.get_ref()));
                    let weight = self.check_int(weight, &k, values::positive::<u32>);
                    if !defined(name.get_ref()) {
                        let msg = format!("no [[region]] named {:?}", name.get_ref());
                        self.error(name.span(), &k, msg);
                    } else if let Some(w) = weight {
                        pool.region_split.push((name.get_ref().clone(), w));
                    }
                }
            }
            if regions.is_empty() {
                continue;
            }
            let Some(backends) = &p.get_ref().backends else {
                continue;
            };
            for (j, b) in backends.get_ref().iter().enumerate() {
                let Some(region) = &b.get_ref().region else {
                    continue;
                };
                if !defined(region.get_ref()) {
                    let k = format!(
                        "{prefix}: {}: region",
                        label(
                            "backend",
                            b.get_ref()
                                .address
                                .as_ref()
                                .or(b.get_ref().dns.as_ref())
                                .or(b.get_ref().srv.as_ref()),
                            j
                        )
                    );
                    let msg = format!(
                        "no [[region]] named {:?} (when regions are defined, a backend's region must be one of them)",
                        region.get_ref()
                    );
                    self.error(region.span(), &k, msg);
                }
            }
        }
    }
}

/// An ISO 3166-1 alpha-2 country code, upper-cased.
fn country(text: &str) -> Result<String, values::Msg> {
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(format!(
            "must be a two-letter ISO 3166-1 country code such as \"US\", got {text:?}"
        ))
    }
}

/// `path` as written, or relative to the config file's folder.
pub(super) fn resolve(config: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    config
        .parent()
        .map_or_else(|| p.to_path_buf(), |dir| dir.join(p))
}
