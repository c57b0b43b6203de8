//! `[gslb]` and `[[region]] vips`: the validated settings of the GeoDNS responder (`gslb`).
//!
//! Why its own file: the responder's settings are one table plus one key of `[[region]]`, and
//! everything it needs is resolved here (pool names to ids, each region's vips, the weights
//! for queriers of unknown region), so the responder never looks a name up. Names are kept
//! lower-case, without the trailing dot.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::PoolId;

/// A string value with its location (as `file::Str`).
type Str = Spanned<String>;

/// `[gslb]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGslb {
    pub bind: Option<Str>,
    pub ttl: Option<Str>,
    pub zone: Option<Str>,
    pub ns: Option<Vec<Str>>,
    pub hostmaster: Option<Str>,
    /// Spanned as a whole so an empty list can be pointed at.
    pub records: Option<Spanned<Vec<Spanned<RawGslbRecord>>>>,
}

/// One entry of `records = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGslbRecord {
    pub name: Option<Str>,
    pub pools: Option<Vec<Str>>,
}

/// Default `[gslb] bind`.
pub const DEFAULT_GSLB_BIND: &str = "0.0.0.0:53";
/// Default `[gslb] ttl`.
pub const DEFAULT_GSLB_TTL: Duration = Duration::from_secs(30);

/// `[gslb]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GslbConfig {
    /// UDP and TCP, the same address.
    pub bind: SocketAddr,
    /// TTL of every answer (and the SOA's negative-caching minimum).
    pub ttl: Duration,
    /// The zone this server is authoritative for (lower case, no trailing dot).
    pub zone: String,
    /// The zone's name servers (the NS answer); default `ns1.<zone>`.
    pub ns: Vec<String>,
    /// The SOA's responsible mailbox as a name; default `hostmaster.<zone>`.
    pub hostmaster: String,
    pub records: Vec<GslbRecord>,
    /// Per region (config order, so a region's index is its `RegionId`): its vips.
    pub vips: Vec<Vec<IpAddr>>,
}

/// One name the responder answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GslbRecord {
    /// Inside `zone` (or the zone itself), lower case, no trailing dot.
    pub name: String,
    /// A region is answered only when every one of these has an available backend there.
    pub pools: Vec<PoolId>,
    /// The first pool's `region_split` as (region index, weight): how queriers of unknown
    /// region are spread. Empty: they get the first region (config order) that qualifies.
    pub split: Vec<(usize, u32)>,
}
