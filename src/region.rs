//! Client IP -> region, and the per-pool region data the selection reads.
//!
//! This module takes an `IpAddr` and knows nothing of HTTP: the HTTP proxy finds the client
//! address (`client_ip`) and so can the L4 proxy. A lookup is, in order:
//! 1. the `cidrs` of every `[[region]]` in one longest-prefix-match table
//!    (`ip_network_table`, a tree bitmap), so `10.1.0.0/16` in one region beats `10.0.0.0/8`
//!    in another;
//! 2. when `[geo] mmdb` is set, the client's country from a MaxMind-format database, mapped
//!    through each region's `countries`. Both common layouts are read: MaxMind GeoLite2 /
//!    GeoIP2 Country (`country.iso_code`) and ip-location-db (`country_code`).
//!
//! Regions are numbered by their order in the file ([`RegionId`]); everything the request path
//! compares is such an integer. Names are resolved to ids once, when the snapshot is built.
//! The database is opened with the snapshot, so it reloads with the config.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use maxminddb::PathElement;

use crate::backend::Backend;
use crate::balance::RoundRobin;
use crate::config::files::{read_bounded, MAX_MMDB_BYTES};
use crate::config::{GeoConfig, RegionConfig};

/// A region's index in the config's `[[region]]` list.
pub type RegionId = u16;

/// "In no region" in [`PoolRegions::backend`].
pub const NO_REGION: RegionId = RegionId::MAX;

/// Why the region table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("geo: mmdb: cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("geo: mmdb: cannot open {path}")]
    Mmdb {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
    #[error("too many regions ({0}); at most {max}", max = NO_REGION)]
    TooMany(usize),
}

/// The country database and the region of each country code.
struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
    /// Upper-case ISO code (two ASCII bytes) -> region.
    countries: HashMap<[u8; 2], RegionId>,
}

/// Every region of one config: names, the CIDR table, the country database, failover orders.
pub struct Regions {
    names: Vec<Arc<str>>,
    table: IpNetworkTable<RegionId>,
    geo: Option<Geo>,
    /// Per region: itself, then its `failover` regions in order.
    order: Vec<Box<[RegionId]>>,
}

impl fmt::Debug for Regions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Regions")
            .field("names", &self.names)
            .field("prefixes", &self.table.len())
            .field("mmdb", &self.geo.is_some())
            .field("order", &self.order)
            .finish()
    }
}

impl Default for Regions {
    fn default() -> Self {
        Regions {
            names: Vec::new(),
            table: IpNetworkTable::new(),
            geo: None,
            order: Vec::new(),
        }
    }
}

impl Regions {
    /// Builds the table; opens the database when `geo.mmdb` is set.
    pub fn build(regions: &[RegionConfig], geo: &GeoConfig) -> Result<Regions, RegionError> {
        let reader = match &geo.mmdb {
            Some(path) => {
                let bytes =
                    read_bounded(path, MAX_MMDB_BYTES).map_err(|source| RegionError::Read {
                        path: path.clone(),
                        source,
                    })?;
                Some(
                    maxminddb::Reader::from_source(bytes).map_err(|source| RegionError::Mmdb {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Regions::with_reader(regions, reader)
    }

    /// Builds the table around an already opened database (benches, tests).
    pub fn with_reader(
        regions: &[RegionConfig],
        reader: Option<maxminddb::Reader<Vec<u8>>>,
    ) -> Result<Regions, RegionError> {
        if regions.len() >= usize::from(NO_REGION) {
            return Err(RegionError::TooMany(regions.len()));
        }
        let ids: HashMap<&str, RegionId> = regions
            .iter()
            .zip(0..)
            .map(|(r, id)| (r.name.as_str(), id))
            .collect();
        let mut table = IpNetworkTable::new();
        let mut countries = HashMap::new();
        for (r, id) in regions.iter().zip(0..) {
            for net in &r.cidrs {
                // `IpNet` is already truncated, so this cannot fail; skip defensively if it does.
                if let Ok(n) = IpNetwork::new(net.network(), net.prefix_len()) {
                    table.insert(n, id);
                }
            }
            for c in &r.countries {
                if let [a, b] = *c.as_bytes() {
                    countries
                        .entry([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
                        .or_insert(id);
                }
            }
        }
        let order = regions
            .iter()
            .zip(0..)
            .map(|(r, id)| {
                std::iter::once(id)
                    .chain(
                        r.failover
                            .iter()
                            .filter_map(|f| ids.get(f.as_str()).copied()),
                    )
                    .collect()
            })
            .collect();
        Ok(Regions {
            names: regions.iter().map(|r| Arc::from(r.name.as_str())).collect(),
            table,
            geo: reader.map(|reader| Geo { reader, countries }),
            order,
        })
    }

    /// No `[[region]]`: every lookup is `None` and selection ignores regions.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The id of a region name (snapshot build, never the request path).
    pub fn id(&self, name: &str) -> Option<RegionId> {
        self.names
            .iter()
            .position(|n| &**n == name)
            .and_then(|i| RegionId::try_from(i).ok())
    }

    /// A region's name, for logs and metrics.
    pub fn name(&self, id: RegionId) -> Option<&Arc<str>> {
        self.names.get(usize::from(id))
    }

    /// The region itself, then its failover regions, nearest first.
    #[inline]
    pub fn order(&self, id: RegionId) -> &[RegionId] {
        self.order.get(usize::from(id)).map_or(&[], |o| o)
    }

    /// The client's region: CIDR table first, then the country database.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<RegionId> {
        if self.is_empty() {
            return None;
        }
        let ip = ip.to_canonical();
        self.lookup_cidr(ip).or_else(|| {
            let geo = self.geo.as_ref()?;
            geo.countries.get(&self.country(ip)?).copied()
        })
    }

    /// The longest configured prefix containing `ip`.
    #[inline]
    pub fn lookup_cidr(&self, ip: IpAddr) -> Option<RegionId> {
        self.table.longest_match(ip).map(|(_, id)| *id)
    }

    /// The upper-case ISO country code of `ip` in the database, either layout.
    #[inline]
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let geo = self.geo.as_ref()?;
        let found = geo.reader.lookup(ip).ok()?;
        let code: &str = match found.decode_path(&[PathElement::Key("country_code")]) {
            Ok(Some(code)) => code,
            _ => found
                .decode_path(&[PathElement::Key("country"), PathElement::Key("iso_code")])
                .ok()
                .flatten()?,
        };
        match *code.as_bytes() {
            [a, b] => Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]),
            _ => None,
        }
    }
}

/// A pool's region data, precomputed at snapshot build.
#[derive(Debug, Default)]
pub struct PoolRegions {
    /// Per backend (same index): its region, or [`NO_REGION`].
    pub backend: Box<[RegionId]>,
    /// `region_split`: for clients of unknown region.
    pub split: Option<RegionSplit>,
    /// Some backend has a region: narrowing by the client's region can find something.
    pub regional: bool,
    /// Per region id, a round-robin cycle over that region's backends. One cycle shared by all
    /// regions would hand a region's backends unequal shares whenever picks for other regions
    /// interleave (the skipped entries' turns fall to whichever backend follows them).
    cycles: Box<[Option<RoundRobin>]>,
}

/// Regions by weight, in a smooth order shared by all workers (one atomic cursor).
#[derive(Debug)]
pub struct RegionSplit {
    pub regions: Box<[RegionId]>,
    order: RoundRobin,
}

impl PoolRegions {
    /// Resolves the backends' region names and the split against `regions`.
    pub fn build(backends: &[Backend], split: &[(String, u32)], regions: &Regions) -> Self {
        let backend: Box<[RegionId]> = backends
            .iter()
            .map(|b| {
                b.region
                    .as_deref()
                    .and_then(|r| regions.id(r))
                    .unwrap_or(NO_REGION)
            })
            .collect();
        let (ids, weights): (Vec<RegionId>, Vec<u32>) = split
            .iter()
            .filter_map(|(name, w)| Some((regions.id(name)?, *w)))
            .unzip();
        let split = (!ids.is_empty()).then(|| RegionSplit {
            regions: ids.into_boxed_slice(),
            order: RoundRobin::with_weights(&weights),
        });
        let top = backend
            .iter()
            .filter(|&&r| r != NO_REGION)
            .map(|&r| usize::from(r) + 1)
            .max()
            .unwrap_or(0);
        let cycles = (0..top)
            .map(|r| {
                let members: Vec<(usize, u32)> = backend
                    .iter()
                    .enumerate()
                    .filter(|&(_, &id)| usize::from(id) == r)
                    .map(|(i, _)| (i, backends[i].weight))
                    .collect();
                (!members.is_empty()).then(|| RoundRobin::over(&members))
            })
            .collect();
        PoolRegions {
            regional: backend.iter().any(|&r| r != NO_REGION),
            backend,
            split,
            cycles,
        }
    }

    /// Region `r`'s own round-robin cycle, if it has backends.
    #[inline]
    pub fn cycle(&self, r: RegionId) -> Option<&RoundRobin> {
        self.cycles.get(usize::from(r))?.as_ref()
    }

    /// The backend's region (`NO_REGION` when out of range or in none).
    #[inline]
    pub fn of(&self, backend: usize) -> RegionId {
        self.backend.get(backend).copied().unwrap_or(NO_REGION)
    }
}

impl RegionSplit {
    /// The next region by weight among those for which `available` holds: a region with no
    /// available backend drops out and its turns go to the others in proportion.
    #[inline]
    pub fn pick(&self, available: impl Fn(RegionId) -> bool) -> Option<RegionId> {
        let k = self
            .order
            .pick_among(self.regions.len(), |k| available(self.regions[k]))?;
        self.regions.get(k).copied()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn region(name: &str, cidrs: &[&str], failover: &[&str]) -> RegionConfig {
        RegionConfig {
            name: name.into(),
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            countries: vec![],
            failover: failover.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn longest_prefix_wins_and_failover_order() {
        let r = Regions::with_reader(
            &[
                region("wide", &["10.0.0.0/8"], &["narrow"]),
                region("narrow", &["10.1.0.0/16", "2001:db8::/32"], &[]),
            ],
            None,
        )
        .unwrap();
        assert_eq!(r.lookup("10.1.2.3".parse().unwrap()), Some(1));
        assert_eq!(r.lookup("10.2.2.3".parse().unwrap()), Some(0));
        assert_eq!(r.lookup("2001:db8::1".parse().unwrap()), Some(1));
        assert_eq!(r.lookup("::ffff:10.1.0.1".parse().unwrap()), Some(1));
        assert_eq!(r.lookup("192.0.2.1".parse().unwrap()), None);
        assert_eq!(r.order(0), &[0, 1]);
        assert_eq!(r.order(1), &[1]);
        assert_eq!(r.id("narrow"), Some(1));
        assert_eq!(r.name(0).map(|n| &**n), Some("wide"));
    }

    /// A tiny IPv4 MaxMind DB (format 2.0, 24-bit records) holding one network, built by hand
    /// so the GeoLite2 layout is tested without a licensed file.
    fn mmdb_with(prefix: u8, first_octet: u8, record: &[u8]) -> Vec<u8> {
        let node_count = u32::from(prefix);
        let data_pointer = node_count + 16;
        let mut out = Vec::new();
        for i in 0..prefix {
            let bit = (first_octet >> (7 - i)) & 1;
            let next = if i + 1 == prefix {
                data_pointer
            } else {
                u32::from(i) + 1
            };
            let (left, right) = if bit == 0 {
                (next, node_count)
            } else {
                (node_count, next)
            };
            out.extend_from_slice(&left.to_be_bytes()[1..]);
            out.extend_from_slice(&right.to_be_bytes()[1..]);
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(record);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let s = |out: &mut Vec<u8>, t: &str| {
            out.push(0x40 | t.len() as u8);
            out.extend_from_slice(t.as_bytes());
        };
        let u16v = |out: &mut Vec<u8>, v: u16| {
            out.push(0xA2);
            out.extend_from_slice(&v.to_be_bytes());
        };
        out.push(0xE0 | 9);
        s(&mut out, "node_count");
        out.push(0xC4);
        out.extend_from_slice(&node_count.to_be_bytes());
        s(&mut out, "record_size");
        u16v(&mut out, 24);
        s(&mut out, "ip_version");
        u16v(&mut out, 4);
        s(&mut out, "database_type");
        s(&mut out, "Test-Country");
        s(&mut out, "languages");
        out.extend_from_slice(&[0x00, 0x04]); // empty array
        s(&mut out, "binary_format_major_version");
        u16v(&mut out, 2);
        s(&mut out, "binary_format_minor_version");
        u16v(&mut out, 0);
        s(&mut out, "build_epoch");
        out.extend_from_slice(&[0x01, 0x02, 0x01]); // uint64 = 1
        s(&mut out, "description");
        out.push(0xE0); // empty map
        out
    }

    fn country_regions() -> Vec<RegionConfig> {
        let mut de = region("eu", &[], &[]);
        de.countries = vec!["DE".into()];
        let mut us = region("us", &["8.8.8.0/24"], &[]);
        us.countries = vec!["US".into()];
        vec![de, us]
    }

    #[test]
    fn geolite2_and_ip_location_db_layouts() {
        // GeoLite2: {"country": {"iso_code": "DE"}} for 8.0.0.0/8.
        let mut geolite = vec![0xE1, 0x47];
        geolite.extend_from_slice(b"country");
        geolite.extend_from_slice(&[0xE1, 0x48]);
        geolite.extend_from_slice(b"iso_code");
        geolite.extend_from_slice(&[0x42]);
        geolite.extend_from_slice(b"DE");
        // ip-location-db: {"country_code": "de"} (lower case is accepted too).
        let mut ild = vec![0xE1, 0x4C];
        ild.extend_from_slice(b"country_code");
        ild.extend_from_slice(&[0x42]);
        ild.extend_from_slice(b"de");
        for record in [geolite, ild] {
            let reader = maxminddb::Reader::from_source(mmdb_with(8, 8, &record)).unwrap();
            let r = Regions::with_reader(&country_regions(), Some(reader)).unwrap();
            assert_eq!(r.country("8.1.2.3".parse().unwrap()), Some(*b"DE"));
            assert_eq!(r.lookup("8.1.2.3".parse().unwrap()), Some(0));
            // A region's CIDR wins over the database.
            assert_eq!(r.lookup("8.8.8.8".parse().unwrap()), Some(1));
            assert_eq!(r.lookup("9.0.0.1".parse().unwrap()), None);
        }
    }

    #[test]
    fn split_is_smooth_and_drops_unavailable_regions() {
        let split = RegionSplit {
            regions: vec![3, 5].into_boxed_slice(),
            order: RoundRobin::with_weights(&[70, 30]),
        };
        let mut c = [0; 2];
        for _ in 0..1000 {
            c[usize::from(split.pick(|_| true).unwrap() == 5)] += 1;
        }
        assert_eq!(c, [700, 300]);
        assert_eq!(split.pick(|r| r == 5), Some(5));
        assert_eq!(split.pick(|_| false), None);
    }
}
