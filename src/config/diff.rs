//! What a reload would change: listeners, routes, pools and backends added, removed or changed,
//! and the backends that would start draining.
//!
//! Pure (two validated configs in, a value out) so `fulcrum check --diff-against` and the admin
//! API's dry run print the same thing, and it is unit-tested without sockets. Identity follows
//! the reload's own rules: a listener is its name and bind (a bind change is remove + add, as
//! the reload does it), a pool its name, a backend its (pool, address), a route its listener and
//! conditions (its pool may change).

use std::fmt;

use super::{BackendConfig, Config, GslbConfig, ListenerConfig, PoolConfig, PoolId, RouteConfig};

/// Added, removed and changed items of one kind, each described in one line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The difference between a running config and a candidate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    pub global: Vec<String>,
    /// `[[region]]` by name, and `[geo]` (as a change of `geo`).
    pub regions: Changes,
    pub listeners: Changes,
    pub routes: Changes,
    pub pools: Changes,
    pub backends: Changes,
    /// `pool "p": ADDRESS` of every backend that stops getting new work (in-flight finishes).
    pub draining: Vec<String>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.global.is_empty()
            && self.regions.is_empty()
            && self.listeners.is_empty()
            && self.routes.is_empty()
            && self.pools.is_empty()
            && self.backends.is_empty()
    }
}

/// What changes when `new` replaces `old`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    if old.global != new.global {
        d.global
            .push("[global] changed (takes effect at the next restart)".into());
    }
    if let Some((line, _)) = gslb_line(old.gslb.as_ref(), new.gslb.as_ref()) {
        d.global.push(line);
    }

    for r in &new.regions {
        match old.regions.iter().find(|o| o.name == r.name) {
            None => d.regions.added.push(format!("region \"{}\"", r.name)),
            Some(o) if o != r => d.regions.changed.push(format!("region \"{}\"", r.name)),
            Some(_) => {}
        }
    }
    for o in &old.regions {
        if !new.regions.iter().any(|r| r.name == o.name) {
            d.regions.removed.push(format!("region \"{}\"", o.name));
        }
    }
    if old.geo != new.geo {
        d.regions
            .changed
            .push(format!("geo: {:?} -> {:?}", old.geo.mmdb, new.geo.mmdb));
    }

    let same_listener =
        |a: &ListenerConfig, b: &ListenerConfig| a.name == b.name && a.bind == b.bind;
    for l in &new.listeners {
        match old.listeners.iter().find(|o| same_listener(o, l)) {
            None => d.listeners.added.push(listener_line(l)),
            Some(o) => {
                let fields = listener_fields((old, o), (new, l));
                if !fields.is_empty() {
                    d.listeners.changed.push(format!(
                        "listener \"{}\": {}",
                        l.name,
                        fields.join(", ")
                    ));
                }
                routes((old, o), (new, l), &mut d.routes);
            }
        }
    }
    for o in &old.listeners {
        if !new.listeners.iter().any(|l| same_listener(o, l)) {
            d.listeners.removed.push(listener_line(o));
        }
    }

    for p in &new.pools {
        let old_pool = old.pools.iter().find(|o| o.name == p.name);
        match old_pool {
            None => d.pools.added.push(format!("pool \"{}\"", p.name)),
            Some(o) => {
                let fields = pool_fields((old, o), (new, p));
                if !fields.is_empty() {
                    d.pools
                        .changed
                        .push(format!("pool \"{}\": {}", p.name, fields.join(", ")));
                }
            }
        }
        let old_backends = old_pool.map_or(&[][..], |o| &o.backends[..]);
        for b in &p.backends {
            match old_backends.iter().find(|o| o.address == b.address) {
                None => d.backends.added.push(backend_line(p, b)),
                Some(o) if o != b => d.backends.changed.push(format!(
                    "{}: {}",
                    backend_line(p, b),
                    backend_fields(o, b).join(", ")
                )),
                Some(_) => {}
            }
        }
        for o in old_backends {
            if !p.backends.iter().any(|b| b.address == o.address) {
                d.backends.removed.push(backend_line(p, o));
                d.draining.push(backend_line(p, o));
            }
        }
        // DNS names: their addresses drain or join as the resolutions say, not here.
        let old_names = old_pool.map_or(&[][..], |o| &o.names[..]);
        let name_line = |n: &crate::config::DnsBackend| {
            format!(
                "pool \"{}\": {} {}",
                p.name,
                n.target.kind(),
                n.target.label()
            )
        };
        for n in &p.names {
            match old_names.iter().find(|o| o.target == n.target) {
                None => d.backends.added.push(name_line(n)),
                Some(o) if o != n => d.backends.changed.push(name_line(n)),
                Some(_) => {}
            }
        }
        for o in old_names {
            if !p.names.iter().any(|n| n.target == o.target) {
                d.backends.removed.push(name_line(o));
            }
        }
    }
    for o in &old.pools {
        if !new.pools.iter().any(|p| p.name == o.name) {
            d.pools.removed.push(format!("pool \"{}\"", o.name));
            for b in &o.backends {
                d.backends.removed.push(backend_line(o, b));
                d.draining.push(backend_line(o, b));
            }
        }
    }
    d
}

/// What a `[gslb]` change does: the zone (names, vips, ttl) is answered from the new snapshot
/// at once; the responder's sockets are bound at start only, so a new or moved `bind` waits
/// for the next restart (as `[global]` does). The flag: part of the change waits for it.
pub fn gslb_line(old: Option<&GslbConfig>, new: Option<&GslbConfig>) -> Option<(String, bool)> {
    match (old, new) {
        (None, Some(g)) => Some((
            format!("[gslb] added on {} (takes effect at the next restart)", g.bind),
            true,
        )),
        (Some(o), None) => Some((
            format!(
                "[gslb] removed: queries on {} are REFUSED now, the port is released at the next restart",
                o.bind
            ),
            true,
        )),
        (Some(o), Some(g)) if o.bind != g.bind => Some((
            format!(
                "[gslb] bind {} -> {} (takes effect at the next restart; answers follow the new zone now)",
                o.bind, g.bind
            ),
            true,
        )),
        (Some(o), Some(g)) if o != g => Some(("[gslb] zone changed (answered now)".into(), false)),
        _ => None,
    }
}

fn listener_line(l: &ListenerConfig) -> String {
    format!("listener \"{}\" ({})", l.name, l.bind)
}

fn backend_line(p: &PoolConfig, b: &BackendConfig) -> String {
    format!("pool \"{}\": backend {}", p.name, b.address)
}

/// `name old -> new` for each field that differs.
macro_rules! fields {
    ($old:expr, $new:expr, $($f:ident),+) => {{
        let mut v = Vec::new();
        $(if $old.$f != $new.$f {
            v.push(format!("{} {:?} -> {:?}", stringify!($f), $old.$f, $new.$f));
        })+
        v
    }};
}

/// Pools are compared by name: the same pool may have another id in the other config.
fn listener_fields(
    (old, o): (&Config, &ListenerConfig),
    (new, l): (&Config, &ListenerConfig),
) -> Vec<String> {
    let mut v = fields!(
        o,
        l,
        protocol,
        max_connections,
        max_request_body,
        proxy_protocol,
        limits,
        redirect_https,
        trace
    );
    if o.tls != l.tls {
        v.push("tls changed".into());
    }
    let (was, is) = (old.pool_name(o.pool), new.pool_name(l.pool));
    if was != is {
        v.push(format!("pool {was:?} -> {is:?}"));
    }
    let routes = |c: &ListenerConfig| ListenerConfig {
        routes: Vec::new(),
        pool: PoolId::new(0),
        ..c.clone()
    };
    if v.is_empty() && routes(o) != routes(l) {
        v.push("settings changed".into());
    }
    v
}

fn pool_fields((old, o): (&Config, &PoolConfig), (new, p): (&Config, &PoolConfig)) -> Vec<String> {
    let mut v = fields!(
        o,
        p,
        balance,
        retries,
        retry_on,
        connect_timeout,
        request_timeout,
        idle_timeout,
        max_connections,
        max_queue,
        queue_timeout,
        slow_start,
        fail_open,
        passive,
        hash_key,
        sticky_cookie,
        region_split,
        send_proxy,
        on_down,
        protocol
    );
    let (was, is) = (
        o.backup.map(|b| old.pool_name(b)),
        p.backup.map(|b| new.pool_name(b)),
    );
    if was != is {
        v.push(format!("backup {was:?} -> {is:?}"));
    }
    if o.health != p.health {
        v.push("health changed".into());
    }
    if o.tls != p.tls {
        v.push("tls changed".into());
    }
    // Keys added later that this list does not name yet still show up.
    let settings = |c: &PoolConfig| PoolConfig {
        backends: Vec::new(),
        names: Vec::new(),
        backup: None,
        ..c.clone()
    };
    if v.is_empty() && settings(o) != settings(p) {
        v.push("settings changed".into());
    }
    v
}

fn backend_fields(o: &BackendConfig, b: &BackendConfig) -> Vec<String> {
    fields!(o, b, name, weight, region)
}

fn route_line(listener: &str, r: &RouteConfig) -> String {
    let mut cond = Vec::new();
    if let Some(h) = &r.host {
        cond.push(format!("host={h}"));
    }
    if let Some(p) = &r.path_prefix {
        cond.push(format!("path_prefix={p}"));
    }
    if let Some(h) = &r.header {
        cond.push(format!("header {}={}", h.name, h.value));
    }
    format!("listener \"{listener}\": route [{}]", cond.join(" "))
}

fn routes(
    (old_cfg, old): (&Config, &ListenerConfig),
    (new_cfg, new): (&Config, &ListenerConfig),
    out: &mut Changes,
) {
    let same = |a: &RouteConfig, b: &RouteConfig| {
        a.host == b.host && a.path_prefix == b.path_prefix && a.header == b.header
    };
    for r in &new.routes {
        let to = new_cfg.pool_name(r.pool);
        match old.routes.iter().find(|o| same(o, r)) {
            None => out
                .added
                .push(format!("{} -> pool \"{to}\"", route_line(&new.name, r))),
            Some(o) if old_cfg.pool_name(o.pool) != to => out.changed.push(format!(
                "{}: pool \"{}\" -> \"{to}\"",
                route_line(&new.name, r),
                old_cfg.pool_name(o.pool),
            )),
            Some(_) => {}
        }
    }
    for o in &old.routes {
        if !new.routes.iter().any(|r| same(o, r)) {
            out.removed.push(format!(
                "{} -> pool \"{}\"",
                route_line(&old.name, o),
                old_cfg.pool_name(o.pool)
            ));
        }
    }
}

impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        for g in &self.global {
            writeln!(f, "~ {g}")?;
        }
        for c in [
            &self.regions,
            &self.listeners,
            &self.routes,
            &self.pools,
            &self.backends,
        ] {
            for a in &c.added {
                writeln!(f, "+ {a}")?;
            }
            for r in &c.removed {
                writeln!(f, "- {r}")?;
            }
            for x in &c.changed {
                writeln!(f, "~ {x}")?;
            }
        }
        for d in &self.draining {
            writeln!(f, "draining: {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{diff, gslb_line};
    use crate::config::Config;

    const OLD: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "p"
[[listener.route]]
path_prefix = "/api/"
pool = "q"

[[listener]]
name = "old"
bind = "127.0.0.1:8081"
pool = "p"

[[pool]]
name = "p"
backends = [{ address = "10.0.0.1:80" }, { address = "10.0.0.2:80" }]

[[pool]]
name = "q"
backends = [{ address = "10.0.1.1:80" }]
"#;

    fn parse(text: &str) -> Config {
        Config::from_toml(text, Path::new("t.toml")).expect("valid")
    }

    #[test]
    fn identical_configs_have_no_changes() {
        let d = diff(&parse(OLD), &parse(OLD));
        assert!(d.is_empty());
        assert_eq!(d.to_string(), "no changes\n");
    }

    #[test]
    fn names_exactly_what_changed() {
        let new = OLD
            .replace(
                "name = \"old\"\nbind = \"127.0.0.1:8081\"",
                "name = \"new\"\nbind = \"127.0.0.1:8082\"",
            )
            .replace(
                "{ address = \"10.0.0.2:80\" }",
                "{ address = \"10.0.0.3:80\", weight = 1 }",
            )
            .replace(
                "{ address = \"10.0.0.1:80\" }",
                "{ address = \"10.0.0.1:80\", weight = 5 }",
            )
            .replace(
                "path_prefix = \"/api/\"\npool = \"q\"",
                "path_prefix = \"/api/\"\npool = \"p\"",
            );
        let d = diff(&parse(OLD), &parse(&new));
        assert_eq!(d.listeners.added, ["listener \"new\" (127.0.0.1:8082)"]);
        assert_eq!(d.listeners.removed, ["listener \"old\" (127.0.0.1:8081)"]);
        assert!(d.listeners.changed.is_empty());
        assert_eq!(
            d.routes.changed,
            ["listener \"web\": route [path_prefix=/api/]: pool \"q\" -> \"p\""]
        );
        assert_eq!(d.backends.added, ["pool \"p\": backend 10.0.0.3:80"]);
        assert_eq!(d.backends.removed, ["pool \"p\": backend 10.0.0.2:80"]);
        assert_eq!(
            d.backends.changed,
            ["pool \"p\": backend 10.0.0.1:80: weight 1 -> 5"]
        );
        assert_eq!(d.draining, ["pool \"p\": backend 10.0.0.2:80"]);
        assert!(d.pools.is_empty());
    }

    #[test]
    fn a_bind_change_is_remove_and_add_and_a_removed_pool_drains_its_backends() {
        let new = OLD
            .replace("127.0.0.1:8080", "127.0.0.1:9090")
            .replace(
                "path_prefix = \"/api/\"\npool = \"q\"",
                "path_prefix = \"/api/\"\npool = \"p\"",
            )
            .replace(
                "[[pool]]\nname = \"q\"\nbackends = [{ address = \"10.0.1.1:80\" }]\n",
                "",
            );
        let d = diff(&parse(OLD), &parse(&new));
        assert_eq!(d.listeners.added, ["listener \"web\" (127.0.0.1:9090)"]);
        assert_eq!(d.listeners.removed, ["listener \"web\" (127.0.0.1:8080)"]);
        assert_eq!(d.pools.removed, ["pool \"q\""]);
        assert_eq!(d.draining, ["pool \"q\": backend 10.0.1.1:80"]);
        let text = d.to_string();
        assert!(text.contains("- pool \"q\"\n"), "{text}");
        assert!(
            text.contains("draining: pool \"q\": backend 10.0.1.1:80\n"),
            "{text}"
        );
    }

    #[test]
    fn regions_and_pool_settings_are_named() {
        let new = format!(
            "{}\n[[region]]\nname = \"eu\"\ncidrs = [\"10.9.0.0/16\"]\n",
            OLD.replace("name = \"q\"\n", "name = \"q\"\nretries = 5\n")
        );
        let d = diff(&parse(OLD), &parse(&new));
        assert_eq!(d.regions.added, ["region \"eu\""]);
        assert_eq!(d.pools.changed, ["pool \"q\": retries 2 -> 5"]);
        assert!(d.backends.is_empty() && d.listeners.is_empty());
        assert!(d.to_string().contains("+ region \"eu\"\n"));
    }

    #[test]
    fn a_gslb_bind_waits_for_a_restart_and_its_zone_does_not() {
        let region = |vip: &str| {
            format!("\n[[region]]\nname = \"eu\"\ncidrs = [\"10.9.0.0/16\"]\nvips = [\"{vip}\"]\n")
        };
        let gslb = |bind: &str| {
            format!("\n[gslb]\nbind = \"{bind}\"\nzone = \"example.com\"\nrecords = [{{ name = \"www.example.com\", pools = [\"p\"] }}]\n")
        };
        let plain = parse(OLD);
        let on = |bind: &str, vip: &str| parse(&format!("{OLD}{}{}", region(vip), gslb(bind)));
        let a = on("127.0.0.1:5300", "192.0.2.1");
        let text = diff(&plain, &a).to_string();
        assert!(
            text.contains("~ [gslb] added on 127.0.0.1:5300 (takes effect at the next restart)"),
            "{text}"
        );
        let moved = diff(&a, &on("127.0.0.1:5301", "192.0.2.1")).to_string();
        assert!(
            moved.contains("~ [gslb] bind 127.0.0.1:5300 -> 127.0.0.1:5301"),
            "{moved}"
        );
        let (line, restart) = gslb_line(
            a.gslb.as_ref(),
            on("127.0.0.1:5300", "192.0.2.2").gslb.as_ref(),
        )
        .expect("a vip change is a zone change");
        assert_eq!(
            (line.as_str(), restart),
            ("[gslb] zone changed (answered now)", false)
        );
        let gone = parse(&format!("{OLD}{}", region("192.0.2.1")));
        assert_eq!(
            gslb_line(a.gslb.as_ref(), gone.gslb.as_ref()).map(|l| l.1),
            Some(true)
        );
        assert!(diff(&a, &a).is_empty());
    }
}
