//! Which pooled upstream connections may carry a request: the backend's address and the pool's
//! TLS settings (`UpstreamTls::id`; 0 = plain), so a plain and a TLS pool to the same address
//! never share a connection. Shared by the HTTP/1 idle lists (`client`) and the HTTP/2
//! connections (`h2pool`), each of which keys its own table by it.

use std::net::SocketAddr;

use crate::backend::Backend;
use crate::pool::Pool;

/// What an upstream connection is kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    addr: SocketAddr,
    tls: u64,
}

impl Key {
    pub fn of(pool: &Pool, backend: &Backend) -> Key {
        Key {
            addr: backend.addr,
            tls: pool.tls.as_ref().map_or(0, |t| t.id),
        }
    }
}
