//! DNS backends (`dns`, `srv`), `[pool.dns]` and `[global] resolvers`.
//!
//! Nothing is resolved here: `fulcrum check` must not depend on the network, and a name that
//! does not resolve yet is not a config error (see `DnsSettings::require`). What is checked is
//! the shape: a host name with a port, an SRV owner name of `_service._proto.domain` form, TTL
//! bounds that make sense together, resolvers that are addresses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use toml::Spanned;

use super::{key, values, Cx, Msg};
use crate::config::file::{RawBackend, RawPoolDns, Str};
use crate::config::{DnsBackend, DnsSettings, DnsTarget};

/// Longest TTL bound accepted (a day): past it a scale-down would go unnoticed for longer.
const MAX_TTL_BOUND: Duration = Duration::from_secs(86_400);

impl Cx<'_> {
    /// A `backends` entry written with `dns` or `srv`; `prefix` names it in errors.
    pub(super) fn dns_backend(
        &mut self,
        b: &Spanned<RawBackend>,
        prefix: &str,
        weight: u32,
        region: Option<String>,
    ) -> Option<DnsBackend> {
        let r = b.get_ref();
        let target = match (&r.dns, &r.srv) {
            (Some(v), None) => self.check_str(v, &key(prefix, "dns"), dns_host)?,
            (None, Some(v)) => {
                if let Some(w) = &r.weight {
                    self.error(
                        w.span(),
                        &key(prefix, "weight"),
                        "an srv backend takes its weights from the SRV records",
                    );
                }
                self.check_str(v, &key(prefix, "srv"), srv_name)?
            }
            _ => return None,
        };
        Some(DnsBackend {
            target,
            weight,
            region,
        })
    }

    /// `[pool.dns]`, defaults for what is absent.
    pub(super) fn pool_dns(
        &mut self,
        raw: Option<&Spanned<RawPoolDns>>,
        prefix: &str,
    ) -> DnsSettings {
        let d = DnsSettings::default();
        let Some(raw) = raw else {
            return d;
        };
        let r = raw.get_ref();
        let prefix = key(prefix, "dns");
        let bound =
            |text: &str| values::duration_in(text, Duration::from_millis(100), MAX_TTL_BOUND);
        let min_ttl = self.opt_str(
            r.min_ttl.as_ref(),
            &key(&prefix, "min_ttl"),
            d.min_ttl,
            bound,
        );
        let max_ttl = self.opt_str(
            r.max_ttl.as_ref(),
            &key(&prefix, "max_ttl"),
            d.max_ttl,
            bound,
        );
        if min_ttl > max_ttl {
            let span = r.max_ttl.as_ref().map_or(raw.span(), Spanned::span);
            self.error(
                span,
                &key(&prefix, "max_ttl"),
                format!("must be >= min_ttl ({min_ttl:?})"),
            );
        }
        DnsSettings {
            min_ttl,
            max_ttl,
            require: r.require.as_ref().is_some_and(|v| *v.get_ref()),
        }
    }

    /// `[global] resolvers`.
    pub(super) fn resolvers(&mut self, raw: Option<&Vec<Str>>) -> Vec<SocketAddr> {
        raw.into_iter()
            .flatten()
            .filter_map(|v| self.check_str(v, "global: resolvers", resolver))
            .collect()
    }
}

/// `"ip:port"`, or a bare IP on port 53.
fn resolver(text: &str) -> Result<SocketAddr, Msg> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    values::backend_addr(text).map_err(|_| {
        format!(
            "must be a DNS server address such as \"10.0.0.2\" or \"10.0.0.2:53\", got {text:?}"
        )
    })
}

/// `"name:port"`: a host name (not an IP: that is `address`) and a port other than 0.
fn dns_host(text: &str) -> Result<DnsTarget, Msg> {
    let shape =
        || format!("must be a host name and port such as \"web.internal:8080\", got {text:?}");
    let (name, port) = text.rsplit_once(':').ok_or_else(shape)?;
    let port: u16 = port.parse().map_err(|_| shape())?;
    if port == 0 {
        return Err("port must not be 0".into());
    }
    if name.parse::<IpAddr>().is_ok() || name.starts_with('[') {
        return Err(format!(
            "{name:?} is an IP address: write it as `address = {text:?}`"
        ));
    }
    host_name(name)?;
    Ok(DnsTarget::Host {
        name: name.to_ascii_lowercase(),
        port,
    })
}

/// `"_service._proto.domain"` (RFC 2782).
fn srv_name(text: &str) -> Result<DnsTarget, Msg> {
    let mut labels = text.splitn(3, '.');
    let (service, proto, domain) = (labels.next(), labels.next(), labels.next());
    let ok = |l: Option<&str>| l.is_some_and(|l| l.len() > 1 && l.starts_with('_'));
    if !ok(service) || !ok(proto) || domain.is_none() {
        return Err(format!(
            "must be an SRV name such as \"_http._tcp.web.internal\", got {text:?}"
        ));
    }
    host_name(domain.unwrap_or_default())?;
    Ok(DnsTarget::Srv {
        name: text.to_ascii_lowercase(),
    })
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63 bytes, 253 in all; one
/// trailing dot allowed (a fully qualified name).
fn host_name(name: &str) -> Result<(), Msg> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if bare.is_empty() || bare.len() > 253 || !bare.split('.').all(label_ok) {
        return Err(format!("{name:?} is not a valid host name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_ports() {
        assert_eq!(
            dns_host("Web.Internal:8080"),
            Ok(DnsTarget::Host {
                name: "web.internal".into(),
                port: 8080
            })
        );
        assert!(dns_host("localhost:80").is_ok());
        assert!(dns_host("web.internal").is_err());
        assert!(dns_host("web.internal:0").is_err());
        assert!(dns_host("10.0.0.1:80").is_err());
        assert!(dns_host("[::1]:80").is_err());
        assert!(dns_host("bad..name:80").is_err());
        assert!(dns_host("sp ace:80").is_err());
    }

    #[test]
    fn srv_names() {
        assert!(srv_name("_http._tcp.web.internal").is_ok());
        assert!(srv_name("http._tcp.web.internal").is_err());
        assert!(srv_name("_http._tcp").is_err());
        assert!(srv_name("_http.tcp.web").is_err());
    }

    /// The config around the pool's `backends` line (line 9) and `[pool.dns]` (from line 10).
    fn pool_with(backends: &str, dns: &str) -> String {
        format!(
            "[global]\nresolvers = [\"10.0.0.2\"]\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:80\"\npool = \"web\"\n[[pool]]\nname = \"web\"\nbackends = [{backends}]\n{dns}"
        )
    }

    #[test]
    fn dns_backends_parse_with_pool_settings() {
        let text = pool_with(
            r#"{ dns = "web.internal:8080", weight = 2, region = "r" }, { srv = "_http._tcp.web.internal" }, { address = "10.0.0.1:80" }"#,
            "[pool.dns]\nmin_ttl = \"2s\"\nmax_ttl = \"1m\"\nrequire = true\n[[region]]\nname = \"r\"\n",
        );
        let c = super::super::tests::parse(&text).expect("valid");
        let p = &c.pools[0];
        assert_eq!(p.backends.len(), 1);
        assert_eq!(p.names.len(), 2);
        assert_eq!(p.names[0].weight, 2);
        assert_eq!(p.names[0].region.as_deref(), Some("r"));
        assert_eq!(p.names[1].target.label(), "_http._tcp.web.internal");
        assert_eq!(p.dns.min_ttl, Duration::from_secs(2));
        assert_eq!(p.dns.max_ttl, Duration::from_secs(60));
        assert!(p.dns.require);
        assert!(
            c.summary()
                .ends_with("1 backend(s), 0 route(s), 2 DNS name(s)"),
            "{}",
            c.summary()
        );
        assert_eq!(
            c.global.resolvers,
            vec!["10.0.0.2:53".parse().expect("addr")]
        );
    }

    #[test]
    fn dns_backend_errors_name_line_and_key() {
        let errors = |b: &str, d: &str| super::super::tests::errors(&pool_with(b, d));
        assert_eq!(
            errors(r#"{ dns = "web.internal" }"#, ""),
            vec!["fulcrum.toml:9:21: pool \"web\": backend \"web.internal\": dns: must be a host name and port such as \"web.internal:8080\", got \"web.internal\"".to_string()]
        );
        let e = errors(r#"{ address = "localhost:8080" }"#, "");
        assert!(e[0].contains("write { dns = \"localhost:8080\" }"), "{e:?}");
        let e = errors(r#"{ srv = "_http._tcp.web", weight = 2 }"#, "");
        assert!(
            e[0].contains("weight: an srv backend takes its weights from the SRV records"),
            "{e:?}"
        );
        let e = errors(r#"{ dns = "a.b:1", address = "10.0.0.1:80" }"#, "");
        assert!(e[0].contains("give one of address, dns or srv"), "{e:?}");
        let e = errors(r#"{ dns = "a.b:1" }, { dns = "A.b:1" }"#, "");
        assert!(e[0].contains("dns: duplicate name in this pool"), "{e:?}");
        let e = errors(
            r#"{ dns = "a.b:1" }"#,
            "[pool.dns]\nmin_ttl = \"1m\"\nmax_ttl = \"2s\"\n",
        );
        assert!(
            e[0].starts_with("fulcrum.toml:12:11: pool \"web\": dns: max_ttl: must be >= min_ttl"),
            "{e:?}"
        );
    }

    #[test]
    fn resolver_addresses() {
        assert_eq!(
            resolver("10.0.0.2"),
            Ok("10.0.0.2:53".parse().expect("addr"))
        );
        assert_eq!(
            resolver("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().expect("addr"))
        );
        assert!(resolver("ns1.example.com").is_err());
    }
}
