//! One active check of one backend: http GET, tcp connect, tcp send/expect, a postgres login
//! that compares the node's role (`pg_is_in_recovery()`) and, for replicas, its replay lag, or a
//! gRPC `grpc.health.v1.Health/Check` (the tiny protobuf hand-encoded: no codegen for a few
//! bytes).
//!
//! http and grpc checks go the way the pool's requests go: over `[pool.tls]` when it is set
//! (the pool's client config, so the same CA, name and client certificate), and HTTP/2 when the
//! pool's `protocol` says so (h2c, h2, or auto when ALPN picks h2).
//!
//! Every check opens a fresh connection (a pooled one would test the pool, not the backend) and
//! the whole exchange is bounded by the check's `timeout`. The error says what failed in words
//! fit for the state-change log line (`connect refused`, `status 500`, ...).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{HealthConfig, UpstreamProtocol};
use crate::tls::client::{TlsError, UpstreamIo, UpstreamTls};

/// How the pool's requests reach a backend, which http and grpc checks follow.
#[derive(Debug, Clone, Copy)]
pub struct Transport<'a> {
    pub tls: Option<&'a UpstreamTls>,
    pub protocol: UpstreamProtocol,
}

#[cfg(test)]
impl Transport<'_> {
    /// Plain TCP, HTTP/1.1.
    pub const PLAIN: Transport<'static> = Transport {
        tls: None,
        protocol: UpstreamProtocol::Http1,
    };
}

/// Largest reply a tcp `expect` check reads before giving up.
const MAX_REPLY: usize = 64 * 1024;

/// A pause in a tcp `expect` check's reply, after data arrived, that ends the reply.
///
/// A check's reply is one small answer written at once (Redis answers `INFO replication` in well
/// under a millisecond), and a server like Redis keeps the connection open for the next
/// command, so neither a close nor the reply's size says it is complete. Waiting for the
/// check's `timeout` instead delayed every failing verdict by that timeout, and a role swap was
/// followed only after `fall x (interval + timeout)`. 50 ms is far above the gap between the
/// segments of one answer, even on a loaded host, and far below any sensible interval.
const REPLY_QUIET: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect refused")]
    Refused,
    #[error("connect failed")]
    Connect(#[source] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("http")]
    Http(#[source] hyper::Error),
    #[error("bad request for the check")]
    Request(#[source] http::Error),
    #[error("status {0}")]
    Status(u16),
    #[error("tls")]
    Tls(#[source] TlsError),
    #[error("grpc-status {0}: {1}")]
    GrpcStatus(u32, String),
    #[error("grpc health: {0}")]
    NotServing(&'static str),
    #[error("grpc health: reply is not a HealthCheckResponse")]
    GrpcReply,
    #[error("i/o")]
    Io(#[source] std::io::Error),
    #[error("reply does not contain {0:?}")]
    Mismatch(String),
    #[error("reply does not contain {0:?} within {1:?}")]
    MismatchTimeout(String, std::time::Duration),
    #[error("postgres")]
    Postgres(#[source] tokio_postgres::Error),
    #[error("cannot read password_file {0}")]
    PasswordFile(std::path::PathBuf, #[source] std::io::Error),
    #[error("role is {0}, want {1}")]
    Role(&'static str, &'static str),
    #[error("replica lags {0:.1} s behind (max_lag {1:?})")]
    Lag(f64, std::time::Duration),
    #[error("replica replay is {0} bytes behind and no transaction was replayed yet")]
    LagBytes(f64),
}

impl ProbeError {
    /// The node answered, and its answer says it holds another role (a Redis replica asked
    /// for `role:master`, a PostgreSQL replica in a primary pool): a standby, not a failure.
    pub fn is_standby(&self) -> bool {
        matches!(
            self,
            ProbeError::Mismatch(_) | ProbeError::Role(..) | ProbeError::NotServing(_)
        )
    }
}

/// The address a check goes to: the backend's, or its side `port`.
pub(super) fn target(backend: SocketAddr, cfg: &HealthConfig) -> SocketAddr {
    match cfg.port {
        0 => backend,
        port => SocketAddr::new(backend.ip(), port),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, ProbeError> {
    TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ProbeError::Refused,
        _ => ProbeError::Connect(e),
    })
}

/// A connection for an http or grpc check: TCP, then TLS when the pool has it. `true` when
/// HTTP/2 is to be spoken on it.
pub(super) async fn open(
    addr: SocketAddr,
    transport: Transport<'_>,
) -> Result<(UpstreamIo, bool), ProbeError> {
    let stream = connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let io = match transport.tls {
        None => UpstreamIo::Plain(stream),
        Some(tls) => tls.connect(stream, addr).await.map_err(ProbeError::Tls)?,
    };
    let h2 = match transport.protocol {
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::H2c | UpstreamProtocol::H2 => true,
        UpstreamProtocol::Auto => io.alpn_h2(),
    };
    Ok((io, h2))
}

/// `GET path` with `Host:` the checked address; healthy when the status is in `expect_status`.
pub(super) async fn http_check(
    addr: SocketAddr,
    cfg: &HealthConfig,
    transport: Transport<'_>,
) -> Result<(), ProbeError> {
    let (io, h2) = open(addr, transport).await?;
    let scheme = if transport.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let result = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(io),
        )
        .await
        .map_err(ProbeError::Http)?;
        let driver = tokio::spawn(conn);
        let req = Request::get(format!("{scheme}://{addr}{}", cfg.path))
            .header(header::USER_AGENT, "fulcrum-health")
            .body(Empty::<Bytes>::new())
            .map_err(ProbeError::Request)?;
        let result = sender.send_request(req).await;
        driver.abort();
        result
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(ProbeError::Http)?;
        // Drives the connection; ends when the sender is dropped or the peer closes.
        let driver = tokio::spawn(conn);
        let req = Request::get(cfg.path.as_str())
            .header(header::HOST, addr.to_string())
            .header(header::USER_AGENT, "fulcrum-health")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(ProbeError::Request)?;
        let result = sender.send_request(req).await;
        driver.abort();
        result
    };
    let status = result.map_err(ProbeError::Http)?.status().as_u16();
    if cfg.expect_status.contains(status) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// A connect; with `send`, the bytes are written; with `expect`, the reply must contain it.
pub(super) async fn tcp_check(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), ProbeError> {
    let mut stream = connect(addr).await?;
    if !cfg.send.is_empty() {
        stream
            .write_all(cfg.send.as_bytes())
            .await
            .map_err(ProbeError::Io)?;
    }
    if cfg.expect.is_empty() {
        return Ok(());
    }
    let needle = cfg.expect.as_bytes();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // The reply decides the check as soon as it can: the substring found, the peer closed, or
    // the reply complete (quiet for `REPLY_QUIET` after data arrived). Before the first byte only
    // the deadline bounds the wait; the outer timeout is a little later and covers the silent
    // case.
    let deadline = tokio::time::Instant::now() + cfg.timeout.mul_f64(0.95);
    loop {
        let until = match reply.is_empty() {
            true => deadline,
            false => deadline.min(tokio::time::Instant::now() + REPLY_QUIET),
        };
        let n = match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(read) => read.map_err(ProbeError::Io)?,
            Err(_) if reply.is_empty() => return Err(ProbeError::Timeout(cfg.timeout)),
            Err(_) if until < deadline => return Err(ProbeError::Mismatch(cfg.expect.clone())),
            Err(_) => return Err(ProbeError::MismatchTimeout(cfg.expect.clone(), cfg.timeout)),
        };
        if n == 0 {
            return Err(ProbeError::Mismatch(cfg.expect.clone()));
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.windows(needle.len()).any(|w| w == needle) {
            return Ok(());
        }
        if reply.len() > MAX_REPLY {
            return Err(ProbeError::Mismatch(cfg.expect.clone()));
        }
    }
}

/// Role and lag in one round trip. The lag is 0 when everything received is replayed (an idle
/// primary sends nothing, so the last replay time alone would grow forever); otherwise the age
/// of the last replayed transaction, and the bytes behind for when none was replayed yet.
const PG_ROLE_QUERY: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0::float8 \
         ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END, \
    COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8";

/// Logs in (no TLS) and checks the role; a replica with `max_lag` also its replay lag.
pub(super) async fn postgres_check(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), ProbeError> {
    use crate::config::PgRole;
    let Some(pg) = &cfg.postgres else {
        return Err(ProbeError::Role("unknown", "a configured role"));
    };
    let mut config = tokio_postgres::Config::new();
    config
        .user(&pg.user)
        .application_name("fulcrum-health")
        .connect_timeout(cfg.timeout);
    if !pg.database.is_empty() {
        config.dbname(&pg.database);
    }
    if let Some(path) = &pg.password_file {
        // A few bytes, on the control runtime: a blocking read is fine here.
        let text =
            std::fs::read_to_string(path).map_err(|e| ProbeError::PasswordFile(path.clone(), e))?;
        config.password(text.trim_end_matches(['\r', '\n']));
    }
    let stream = connect(addr).await?;
    let (client, connection) = config
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .map_err(ProbeError::Postgres)?;
    let driver = tokio::spawn(connection);
    let row = client.query_one(PG_ROLE_QUERY, &[]).await;
    driver.abort();
    let row = row.map_err(ProbeError::Postgres)?;
    let in_recovery: bool = row.try_get(0).map_err(ProbeError::Postgres)?;
    let lag_s: Option<f64> = row.try_get(1).map_err(ProbeError::Postgres)?;
    let behind: f64 = row.try_get(2).map_err(ProbeError::Postgres)?;
    let role = if in_recovery { "replica" } else { "primary" };
    match (pg.role, in_recovery) {
        (PgRole::Primary, false) => Ok(()),
        (PgRole::Primary, true) => Err(ProbeError::Role(role, "primary")),
        (PgRole::Replica, false) => Err(ProbeError::Role(role, "replica")),
        (PgRole::Replica, true) => match (pg.max_lag, lag_s) {
            (None, _) => Ok(()),
            (Some(max), Some(lag)) if lag > max.as_secs_f64() => Err(ProbeError::Lag(lag, max)),
            (Some(_), Some(_)) => Ok(()),
            (Some(_), None) if behind > 0.0 => Err(ProbeError::LagBytes(behind)),
            (Some(_), None) => Ok(()),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::{ProbeError, Transport};
    use crate::config::HealthConfig;

    /// One tcp check within its timeout, as the checker runs it.
    async fn check(
        addr: SocketAddr,
        cfg: &HealthConfig,
        _transport: Transport<'_>,
    ) -> Result<(), ProbeError> {
        let run = super::tcp_check(super::target(addr, cfg), cfg);
        tokio::time::timeout(cfg.timeout, run)
            .await
            .unwrap_or(Err(ProbeError::Timeout(cfg.timeout)))
    }

    /// A server that reads the check's command, answers `reply` in one write, then keeps the
    /// connection open (as Redis does) or closes it.
    async fn server(reply: &'static str, close: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 256];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(reply.as_bytes()).await;
                    if close {
                        return;
                    }
                    // Held open until the checker hangs up.
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        addr
    }

    fn expect_master(timeout: Duration) -> HealthConfig {
        HealthConfig {
            send: "INFO replication\r\n".into(),
            expect: "role:master".into(),
            timeout,
            ..HealthConfig::tcp()
        }
    }

    #[tokio::test]
    async fn a_complete_reply_without_the_substring_fails_long_before_the_timeout() {
        let addr = server("$30\r\n# Replication\r\nrole:slave\r\n\r\n", false).await;
        let timeout = Duration::from_secs(5);
        let started = Instant::now();
        let result = check(addr, &expect_master(timeout), super::Transport::PLAIN).await;
        let took = started.elapsed();
        assert!(matches!(result, Err(ProbeError::Mismatch(_))), "{result:?}");
        assert!(
            took < timeout / 2,
            "decided after {took:?} (timeout {timeout:?})"
        );
    }

    #[tokio::test]
    async fn the_substring_passes_and_a_close_decides_on_what_was_read() {
        let cfg = expect_master(Duration::from_secs(5));
        let open = server("# Replication\r\nrole:master\r\n", false).await;
        assert!(check(open, &cfg, super::Transport::PLAIN).await.is_ok());
        let closed = server("role:slave\r\n", true).await;
        let result = check(closed, &cfg, super::Transport::PLAIN).await;
        assert!(matches!(result, Err(ProbeError::Mismatch(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepted by the kernel's backlog, never answered.
        let result = check(
            addr,
            &expect_master(Duration::from_millis(200)),
            super::Transport::PLAIN,
        )
        .await;
        assert!(matches!(result, Err(ProbeError::Timeout(_))), "{result:?}");
        drop(listener);
    }
}
