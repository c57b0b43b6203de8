//! `[pool.health]` and `[pool.passive]`: check kinds, thresholds, statuses, ejection times.
//!
//! Split from `pools.rs` so the pool file stays about pools; it extends the same collector.

use toml::Spanned;

use super::{key, values, Cx};
use crate::config::file::{RawHealth, RawPassive};
use crate::config::{HealthConfig, HealthKind, PassiveConfig, StatusRanges};

impl Cx<'_> {
    /// A pool's `[pool.health]`; bad values fall back to defaults so the rest is still checked.
    pub(super) fn health(&mut self, h: &Spanned<RawHealth>, pool: &str) -> HealthConfig {
        let r = h.get_ref();
        let prefix = format!("{pool}: health");
        let k = |field: &str| key(&prefix, field);
        let kind = self.opt_str(r.kind.as_ref(), &k("kind"), HealthKind::Http, health_kind);
        let d = match kind {
            HealthKind::Http => HealthConfig::http(),
            HealthKind::Tcp => HealthConfig::tcp(),
        };
        let path = self.opt_str(
            r.path.as_ref(),
            &k("path"),
            d.path.clone(),
            values::path_prefix,
        );
        let expect_status = self.opt_str(
            r.expect_status.as_ref(),
            &k("expect_status"),
            d.expect_status.clone(),
            StatusRanges::parse,
        );
        let send = self.opt_str(r.send.as_ref(), &k("send"), String::new(), |s| Ok(s.into()));
        let expect = self.opt_str(r.expect.as_ref(), &k("expect"), String::new(), |s| {
            Ok(s.into())
        });
        if kind != HealthKind::Tcp {
            for (field, v) in [("send", &r.send), ("expect", &r.expect)] {
                if let Some(v) = v {
                    self.error(v.span(), &k(field), "only for kind = \"tcp\"");
                }
            }
        }
        if kind != HealthKind::Http {
            for (field, v) in [("path", &r.path), ("expect_status", &r.expect_status)] {
                if let Some(v) = v {
                    self.error(v.span(), &k(field), "only for kind = \"http\"");
                }
            }
        }
        let port = self.opt_int(r.port.as_ref(), &k("port"), d.port, values::non_negative);
        let interval = self.opt_str(
            r.interval.as_ref(),
            &k("interval"),
            d.interval,
            values::positive_duration,
        );
        let timeout = self.opt_str(
            r.timeout.as_ref(),
            &k("timeout"),
            d.timeout,
            values::positive_duration,
        );
        let rise = self.opt_int(r.rise.as_ref(), &k("rise"), d.rise, values::positive);
        let fall = self.opt_int(r.fall.as_ref(), &k("fall"), d.fall, values::positive);
        HealthConfig {
            kind,
            path,
            expect_status,
            send,
            expect,
            port,
            interval,
            timeout,
            rise,
            fall,
        }
    }

    /// A pool's `[pool.passive]`.
    pub(super) fn passive(&mut self, p: &RawPassive, pool: &str) -> PassiveConfig {
        let prefix = format!("{pool}: passive");
        let d = PassiveConfig::default();
        PassiveConfig {
            consecutive_failures: self.opt_int(
                p.consecutive_failures.as_ref(),
                &key(&prefix, "consecutive_failures"),
                d.consecutive_failures,
                values::non_negative,
            ),
            eject_for: self.opt_str(
                p.eject_for.as_ref(),
                &key(&prefix, "eject_for"),
                d.eject_for,
                values::positive_duration,
            ),
        }
    }
}

/// `"http"` | `"tcp"`; `"postgres"` is documented but comes later, so it says so.
fn health_kind(text: &str) -> Result<HealthKind, values::Msg> {
    match text {
        "http" => Ok(HealthKind::Http),
        "tcp" => Ok(HealthKind::Tcp),
        "postgres" => Err("\"postgres\" is not supported yet".into()),
        other => Err(format!("must be \"http\" or \"tcp\", got {other:?}")),
    }
}
