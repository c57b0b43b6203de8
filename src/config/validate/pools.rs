//! `[[pool]]` tables: defaults, ranges, unique names and unique backend addresses.
//!
//! Split from `validate.rs` only to keep each file readable; it extends the same collector.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::{key, label, values, Cx};
use crate::config::file::{RawBackend, RawPool, Str};
use crate::config::{
    BackendConfig, BalanceKind, DnsBackend, DnsTarget, HealthKind, PoolConfig, PoolId, RetryOn,
    UpstreamProtocol,
};

impl Cx<'_> {
    /// Every `[[pool]]`, with unique names.
    pub(super) fn pools(&mut self, raw: &[Spanned<RawPool>]) -> Vec<PoolConfig> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut pools = Vec::new();
        for (i, p) in raw.iter().enumerate() {
            let prefix = label("pool", p.get_ref().name.as_ref(), i);
            let name = self.req_str(
                p.get_ref().name.as_ref(),
                p.span(),
                &key(&prefix, "name"),
                values::name,
            );
            if let (Some(name), Some(v)) = (&name, &p.get_ref().name) {
                self.unique(
                    &mut seen,
                    name.clone(),
                    v.span(),
                    &key(&prefix, "name"),
                    "pool name",
                );
            }
            let pool = self.pool(p, &prefix, name.unwrap_or_default());
            pools.push(pool);
        }
        self.backups(raw, &mut pools);
        pools
    }

    /// Every `backup` names another pool, and following them never comes back to a pool; each
    /// is resolved to its pool's id.
    fn backups(&mut self, raw: &[Spanned<RawPool>], pools: &mut [PoolConfig]) {
        let index: HashMap<String, usize> = pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        // First every name resolved, then the chains walked over the resolved ids.
        let mut resolved = vec![None; pools.len()];
        let mut spans = vec![None; pools.len()];
        for (i, (p, r)) in pools.iter().zip(raw).enumerate() {
            let Some(v) = &r.get_ref().backup else {
                continue;
            };
            let k = key(&label("pool", r.get_ref().name.as_ref(), i), "backup");
            let Some(backup) = self.maybe_str(Some(v), &k, values::name).ok().flatten() else {
                continue;
            };
            if backup == p.name {
                self.error(v.span(), &k, "must name another pool, not itself");
                continue;
            }
            let Some(&first) = index.get(&backup) else {
                self.error(v.span(), &k, format!("no pool named {backup:?}"));
                continue;
            };
            resolved[i] = Some(first);
            spans[i] = Some((v.span(), k, backup));
        }
        for (i, span) in spans.into_iter().enumerate() {
            let (Some(first), Some((span, k, backup))) = (resolved[i], span) else {
                continue;
            };
            // Walk the chain; it is a cycle when it reaches this pool again.
            let mut at = Some(first);
            for _ in 0..pools.len() {
                match at {
                    Some(j) if j == i => {
                        self.error(
                            span.clone(),
                            &k,
                            format!("backup chain from {backup:?} loops back to this pool"),
                        );
                        break;
                    }
                    Some(j) => at = resolved[j],
                    None => break,
                }
            }
        }
        for (p, backup) in pools.iter_mut().zip(resolved) {
            p.backup = backup.map(PoolId::new);
        }
    }

    /// One `[[pool]]`; bad values fall back to defaults so the rest is still checked.
    fn pool(&mut self, p: &Spanned<RawPool>, prefix: &str, name: String) -> PoolConfig {
        let r = p.get_ref();
        let d = PoolConfig::new(name, Vec::new());
        let balance = self.opt_str(
            r.balance.as_ref(),
            &key(prefix, "balance"),
            d.balance,
            values::balance,
        );
        let retries = self.opt_int(
            r.retries.as_ref(),
            &key(prefix, "retries"),
            d.retries,
            values::non_negative,
        );
        let timeout = |cx: &mut Self, v: Option<&Str>, field: &str, default: Duration| {
            cx.opt_str(v, &key(prefix, field), default, values::positive_duration)
        };
        let connect_timeout = timeout(
            self,
            r.connect_timeout.as_ref(),
            "connect_timeout",
            d.connect_timeout,
        );
        let request_timeout = timeout(
            self,
            r.request_timeout.as_ref(),
            "request_timeout",
            d.request_timeout,
        );
        let idle_timeout = timeout(
            self,
            r.idle_timeout.as_ref(),
            "idle_timeout",
            d.idle_timeout,
        );
        let max_connections = self.opt_int(
            r.max_connections.as_ref(),
            &key(prefix, "max_connections"),
            d.max_connections,
            |v| values::at_most(v, values::MAX_UPSTREAM_CONNECTIONS),
        );
        let max_queue = self.opt_int(
            r.max_queue.as_ref(),
            &key(prefix, "max_queue"),
            d.max_queue,
            |v| values::at_most(v, values::MAX_UPSTREAM_QUEUE),
        );
        let queue_timeout = self.opt_str(
            r.queue_timeout.as_ref(),
            &key(prefix, "queue_timeout"),
            d.queue_timeout,
            values::queue_timeout,
        );
        let hash_key = self.opt_str(
            r.hash_key.as_ref(),
            &key(prefix, "hash_key"),
            d.hash_key,
            values::hash_key,
        );
        let sticky_cookie = self.opt_str(
            r.sticky_cookie.as_ref(),
            &key(prefix, "sticky_cookie"),
            d.sticky_cookie,
            values::cookie_name,
        );
        // A key the balancer ignores is a mistake worth reporting (a typo in `balance`); not
        // when `balance` itself is bad, which is reported already.
        let balance_ok = r
            .balance
            .as_ref()
            .is_none_or(|b| values::balance(b.get_ref()).is_ok());
        for (v, field, kind) in [
            (&r.hash_key, "hash_key", BalanceKind::ConsistentHash),
            (&r.sticky_cookie, "sticky_cookie", BalanceKind::StickyCookie),
        ] {
            if let Some(v) = v.as_ref().filter(|_| balance_ok && balance != kind) {
                let needs = if kind == BalanceKind::ConsistentHash {
                    "consistent_hash"
                } else {
                    "sticky_cookie"
                };
                let message = format!("only used with balance = {needs:?}");
                self.error(v.span(), &key(prefix, field), message);
            }
        }
        let (backends, names) = match &r.backends {
            Some(list) if list.get_ref().is_empty() => {
                self.error(
                    list.span(),
                    &key(prefix, "backends"),
                    "must list at least one backend",
                );
                (Vec::new(), Vec::new())
            }
            Some(list) => self.backends(list.get_ref(), prefix),
            None => {
                self.error(
                    p.span(),
                    &key(prefix, "backends"),
                    "missing (required): a pool needs at least one backend",
                );
                (Vec::new(), Vec::new())
            }
        };
        let dns = self.pool_dns(r.dns.as_ref(), prefix);
        let slow_start = self.opt_str(
            r.slow_start.as_ref(),
            &key(prefix, "slow_start"),
            d.slow_start,
            values::duration,
        );
        let fail_open = r.fail_open.as_ref().is_some_and(|v| *v.get_ref());
        let send_proxy = r.send_proxy.as_ref().is_some_and(|v| *v.get_ref());
        let on_down = self.opt_str(
            r.on_down.as_ref(),
            &key(prefix, "on_down"),
            d.on_down,
            values::on_down,
        );
        let health = r.health.as_ref().map(|h| self.health(h, prefix));
        let (protocol, tls) = self.upstream(r, prefix);
        if let (Some(h), UpstreamProtocol::Http1) = (&health, protocol) {
            let kind = r.health.as_ref().and_then(|h| h.get_ref().kind.as_ref());
            if let (HealthKind::Grpc, Some(v)) = (h.kind, kind) {
                self.error(
                    v.span(),
                    &key(prefix, "health: kind"),
                    "grpc checks speak HTTP/2: set the pool's protocol to \"h2c\", \"h2\" or \"auto\"",
                );
            }
        }
        let passive = r
            .passive
            .as_ref()
            .map_or(d.passive, |v| self.passive(v.get_ref(), prefix));
        let retry_on = r.retry_on.as_ref().map_or(d.retry_on, |list| {
            let mut on = RetryOn::none();
            for item in list {
                if let Some(set) = self.check_str(item, &key(prefix, "retry_on"), values::retry_on)
                {
                    set(&mut on);
                }
            }
            on
        });
        PoolConfig {
            protocol,
            tls,
            send_proxy,
            on_down,
            retry_on,
            // Resolved to an id once every pool is known (`backups`).
            backup: None,
            slow_start,
            fail_open,
            health,
            passive,
            balance,
            retries,
            connect_timeout,
            request_timeout,
            idle_timeout,
            max_connections,
            max_queue,
            queue_timeout,
            hash_key,
            sticky_cookie,
            backends,
            names,
            dns,
            ..d
        }
    }

    /// A pool's `backends`: literal addresses, and names to resolve (`dns`, `srv`). Each entry
    /// has exactly one of `address`, `dns`, `srv`; an address or a name listed twice is an
    /// error (it would double its weight).
    fn backends(
        &mut self,
        raw: &[Spanned<RawBackend>],
        pool: &str,
    ) -> (Vec<BackendConfig>, Vec<DnsBackend>) {
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        let mut seen_names: HashMap<DnsTarget, usize> = HashMap::new();
        let mut backend_names: Vec<String> = Vec::new();
        let mut out = Vec::new();
        let mut names = Vec::new();
        for (i, b) in raw.iter().enumerate() {
            let r = b.get_ref();
            let written = r.address.as_ref().or(r.dns.as_ref()).or(r.srv.as_ref());
            let prefix = format!("{pool}: {}", label("backend", written, i));
            let weight = self.opt_int(
                r.weight.as_ref(),
                &key(&prefix, "weight"),
                1,
                values::positive,
            );
            let region = self
                .maybe_str(r.region.as_ref(), &key(&prefix, "region"), values::name)
                .unwrap_or_default();
            let name = self
                .maybe_str(r.name.as_ref(), &key(&prefix, "name"), values::name)
                .unwrap_or_default();
            if let (Some(n), Some(v)) = (&name, &r.name) {
                if r.dns.is_some() || r.srv.is_some() {
                    self.error(
                        v.span(),
                        &key(&prefix, "name"),
                        "a dns or srv backend's addresses are shown under its DNS name; name is for address backends",
                    );
                } else if backend_names.contains(n) {
                    self.error(
                        v.span(),
                        &key(&prefix, "name"),
                        format!("backend name {n:?} is used twice in this pool"),
                    );
                }
                backend_names.push(n.clone());
            }
            let given = [&r.address, &r.dns, &r.srv]
                .iter()
                .filter(|v| v.is_some())
                .count();
            if given > 1 {
                self.error(
                    b.span(),
                    &key(&prefix, "address"),
                    "give one of address, dns or srv, not several",
                );
                continue;
            }
            if r.dns.is_some() || r.srv.is_some() {
                let Some(name) = self.dns_backend(b, &prefix, weight, region) else {
                    continue;
                };
                let span = written.map_or(b.span(), Spanned::span);
                let k = key(&prefix, name.target.kind());
                if self.unique(
                    &mut seen_names,
                    name.target.clone(),
                    span,
                    &k,
                    "name in this pool",
                ) {
                    names.push(name);
                }
                continue;
            }
            let address = self.req_str(
                r.address.as_ref(),
                b.span(),
                &key(&prefix, "address"),
                values::backend_addr,
            );
            let (Some(address), Some(span)) = (address, r.address.as_ref().map(Spanned::span))
            else {
                continue;
            };
            if self.unique(
                &mut seen,
                address,
                span,
                &key(&prefix, "address"),
                "backend address in this pool",
            ) {
                out.push(BackendConfig {
                    address,
                    name,
                    weight,
                    region,
                });
            }
        }
        (out, names)
    }
}
