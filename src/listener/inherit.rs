//! Listening sockets across a binary upgrade (`upgrade`): the ones the old process handed
//! over, taken by the listeners of the new config with their address instead of a fresh bind,
//! and duplicates of every live socket for the next new process. Part of [`Sockets`], the one
//! registry of listening sockets.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::{BoundListener, Sockets};

/// Listening sockets a binary upgrade handed over from the old process (`upgrade`): the
/// same kernel sockets, so connections queued on them are never reset.
#[derive(Debug)]
pub struct InheritedListener {
    pub name: String,
    pub addr: SocketAddr,
    pub sockets: Vec<std::net::TcpListener>,
}

impl Sockets {
    /// Sockets the old process handed over, taken by [`bind`](Self::bind) before it binds.
    pub fn inherit(&mut self, listeners: Vec<InheritedListener>) {
        self.inherited = listeners;
    }

    pub(super) fn take_inherited(&mut self, name: &str, addr: SocketAddr) -> Option<BoundListener> {
        let at = self.inherited.iter().position(|i| {
            i.addr == addr || (addr.port() == 0 && i.name == name && i.addr.ip() == addr.ip())
        })?;
        let i = self.inherited.swap_remove(at);
        tracing::info!(listener = name, addr = %i.addr, sockets = i.sockets.len(), "listening on the sockets the old process handed over");
        Some(BoundListener {
            name: name.to_string(),
            addr: i.addr,
            sockets: i.sockets,
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Closes the inherited sockets no listener took (the new config dropped them); the old
    /// process drains their connections.
    pub fn drop_unused_inherited(&mut self) {
        for i in self.inherited.drain(..) {
            tracing::info!(listener = %i.name, addr = %i.addr, "not in the new config: inherited socket closed");
        }
    }

    /// A fresh duplicate of every listening socket (name, address, one per worker socket),
    /// for the new process of a binary upgrade.
    pub fn duplicates(&self) -> io::Result<Vec<InheritedListener>> {
        self.live
            .iter()
            .map(|l| {
                let sockets = l
                    .handover
                    .iter()
                    .map(std::net::TcpListener::try_clone)
                    .collect::<io::Result<_>>()?;
                Ok(InheritedListener {
                    name: l.name.clone(),
                    addr: l.addr,
                    sockets,
                })
            })
            .collect()
    }
}
