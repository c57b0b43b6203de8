//! `[pool.health]` and `[pool.passive]`: check kinds, thresholds, statuses, ejection times.
//!
//! Split from `pools.rs` so the pool file stays about pools; it extends the same collector.

use toml::Spanned;

use super::regions::resolve;
use super::{key, values, Cx};
use crate::config::file::{RawHealth, RawPassive};
use crate::config::{HealthConfig, HealthKind, PassiveConfig, PgRole, PostgresCheck, StatusRanges};

impl Cx<'_> {
    /// A pool's `[pool.health]`; bad values fall back to defaults so the rest is still checked.
    pub(super) fn health(&mut self, h: &Spanned<RawHealth>, pool: &str) -> HealthConfig {
        let r = h.get_ref();
        let prefix = format!("{pool}: health");
        let k = |field: &str| key(&prefix, field);
        let kind = self.opt_str(r.kind.as_ref(), &k("kind"), HealthKind::Http, health_kind);
        let d = match kind {
            HealthKind::Http => HealthConfig::http(),
            HealthKind::Tcp | HealthKind::Postgres | HealthKind::Grpc => HealthConfig::tcp(),
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
        let postgres = self.postgres_keys(r, kind, &prefix);
        let service = self.opt_str(r.service.as_ref(), &k("service"), String::new(), |s| {
            Ok(s.into())
        });
        if let (Some(v), false) = (&r.service, kind == HealthKind::Grpc) {
            self.error(v.span(), &k("service"), "only for kind = \"grpc\"");
        }
        let port = self.opt_int(r.port.as_ref(), &k("port"), d.port, values::non_negative);
        let interval = self.opt_str(
            r.interval.as_ref(),
            &k("interval"),
            d.interval,
            values::check_interval,
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
            postgres,
            service,
            port,
            interval,
            timeout,
            rise,
            fall,
        }
    }

    /// `role`, `user`, `database`, `password_file`, `max_lag`: required / allowed for
    /// `kind = "postgres"` only.
    fn postgres_keys(
        &mut self,
        r: &RawHealth,
        kind: HealthKind,
        prefix: &str,
    ) -> Option<PostgresCheck> {
        let k = |field: &str| key(prefix, field);
        let keys = [
            ("role", &r.role),
            ("user", &r.user),
            ("database", &r.database),
            ("password_file", &r.password_file),
            ("max_lag", &r.max_lag),
        ];
        if kind != HealthKind::Postgres {
            for (field, v) in keys {
                if let Some(v) = v {
                    self.error(v.span(), &k(field), "only for kind = \"postgres\"");
                }
            }
            return None;
        }
        let table = 0..0;
        let role = match &r.role {
            Some(v) => self.req_str(Some(v), table.clone(), &k("role"), pg_role),
            None => {
                let span = r.kind.as_ref().map_or(table.clone(), Spanned::span);
                self.error(
                    span,
                    &k("role"),
                    "missing (required for kind = \"postgres\"): \"primary\" or \"replica\"",
                );
                None
            }
        };
        let user = match &r.user {
            Some(v) => self.req_str(Some(v), table.clone(), &k("user"), non_empty),
            None => {
                let span = r.kind.as_ref().map_or(table.clone(), Spanned::span);
                self.error(
                    span,
                    &k("user"),
                    "missing (required for kind = \"postgres\")",
                );
                None
            }
        };
        let database = self.opt_str(r.database.as_ref(), &k("database"), String::new(), |s| {
            Ok(s.into())
        });
        let password_file = match &r.password_file {
            Some(v) if !v.get_ref().is_empty() => {
                let path = resolve(self.path, v.get_ref());
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => Some(path),
                    Ok(_) => {
                        self.error(
                            v.span(),
                            &k("password_file"),
                            format!("{} is not a file", path.display()),
                        );
                        None
                    }
                    Err(e) => {
                        self.error(
                            v.span(),
                            &k("password_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let max_lag = self
            .maybe_str(r.max_lag.as_ref(), &k("max_lag"), values::positive_duration)
            .unwrap_or_default();
        if let (Some(PgRole::Primary), Some(v)) = (role, &r.max_lag) {
            self.error(v.span(), &k("max_lag"), "only for role = \"replica\"");
        }
        Some(PostgresCheck {
            role: role?,
            user: user?,
            database,
            password_file,
            max_lag,
        })
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

/// `"http"` | `"tcp"` | `"postgres"` | `"grpc"`.
fn health_kind(text: &str) -> Result<HealthKind, values::Msg> {
    match text {
        "http" => Ok(HealthKind::Http),
        "tcp" => Ok(HealthKind::Tcp),
        "postgres" => Ok(HealthKind::Postgres),
        "grpc" => Ok(HealthKind::Grpc),
        other => Err(format!(
            "must be \"http\", \"tcp\", \"postgres\" or \"grpc\", got {other:?}"
        )),
    }
}

/// `"primary"` | `"replica"`.
fn pg_role(text: &str) -> Result<PgRole, values::Msg> {
    match text {
        "primary" => Ok(PgRole::Primary),
        "replica" => Ok(PgRole::Replica),
        other => Err(format!("must be \"primary\" or \"replica\", got {other:?}")),
    }
}

fn non_empty(text: &str) -> Result<String, values::Msg> {
    if text.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(text.into())
    }
}
