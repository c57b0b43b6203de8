//! The hand-over channel of a binary upgrade on Linux: an abstract `SOCK_SEQPACKET` socket,
//! JSON messages, listening sockets passed with SCM_RIGHTS (rustix: safe `OwnedFd`s), and
//! the old process's side of the wait (the child's pid checked with `SO_PEERCRED`, its exit
//! and every deadline watched between short receive timeouts).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::sockopt::{self, Timeout};
use rustix::net::{
    self as rnet, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use serde_json::{json, Value};

use super::{
    Handover, Inherited, Predecessor, UpgradeError, CONNECT_WITHIN, DOWN_PER_MESSAGE, ENV,
    FDS_PER_MESSAGE, MAX_MESSAGE, READY_WITHIN,
};
use crate::health::checker::Down;
use crate::listener::InheritedListener;

/// How often the old process looks at the child and the clock while it waits.
const POLL: Duration = Duration::from_millis(100);

fn channel_err(e: impl Into<io::Error>) -> UpgradeError {
    UpgradeError::Channel(e.into())
}

fn seqpacket() -> Result<OwnedFd, UpgradeError> {
    rnet::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(channel_err)
}

/// Sends one message with `fds` attached.
fn send(channel: &OwnedFd, msg: &Value, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let text = msg.to_string();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut control = if fds.is_empty() {
        SendAncillaryBuffer::default()
    } else {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("too many descriptors for one message"));
        }
        control
    };
    rnet::sendmsg(
        channel,
        &[IoSlice::new(text.as_bytes())],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Receives one message and the descriptors that came with it; `None` when the peer closed.
fn recv(channel: &OwnedFd) -> io::Result<Option<(Value, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rnet::recvmsg(
        channel,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Err(io::Error::other("message or descriptors truncated"));
    }
    if got.bytes == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..got.bytes.min(buf.len())])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((msg, fds)))
}

/// The new process's answer; a failure to send is logged (the old one then sees the channel
/// close, or this process exit, and keeps serving).
pub fn answer(channel: &OwnedFd, msg: &Value) {
    if let Err(e) = send(channel, msg, &[]) {
        tracing::warn!(error = %e, "binary upgrade: cannot answer the old process");
    }
}

/// The new process's side: connect to `name`, take every socket until `end`.
pub fn receive(name: &[u8]) -> Result<Inherited, UpgradeError> {
    let channel = seqpacket()?;
    let addr = SocketAddrUnix::new_abstract_name(name).map_err(channel_err)?;
    rnet::connect(&channel, &addr).map_err(channel_err)?;
    sockopt::set_socket_timeout(&channel, Timeout::Recv, Some(CONNECT_WITHIN))
        .map_err(channel_err)?;
    let mut handover = Handover::default();
    loop {
        let Some((msg, fds)) = recv(&channel).map_err(UpgradeError::Channel)? else {
            return Err(UpgradeError::Protocol(
                "channel closed before \"end\"".into(),
            ));
        };
        let addr = |key: &str| -> Result<SocketAddr, UpgradeError> {
            msg[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| UpgradeError::Protocol(msg.to_string()))
        };
        let sockets = || fds.into_iter().map(std::net::TcpListener::from);
        if let Some(name) = msg["listener"].as_str() {
            let addr = addr("addr")?;
            // One listener with more sockets than fit in a message arrives in several.
            match handover.listeners.iter_mut().find(|l| l.name == name) {
                Some(l) => l.sockets.extend(sockets()),
                None => handover.listeners.push(InheritedListener {
                    name: name.to_string(),
                    addr,
                    sockets: sockets().collect(),
                }),
            }
        } else if msg.get("admin").is_some() {
            let addr = addr("admin")?;
            let socket = sockets()
                .next()
                .ok_or_else(|| UpgradeError::Protocol("admin socket missing".into()))?;
            handover.admin = Some((addr, socket));
        } else if let Some(down) = msg["down"].as_array() {
            for entry in down {
                let pool = entry[0].as_str();
                let backend = entry[1].as_str().and_then(|a| a.parse().ok());
                if let (Some(pool), Some(addr)) = (pool, backend) {
                    handover.down.push(Down {
                        pool: pool.to_string(),
                        addr,
                        // Ejections last 5 minutes at most; an hour bounds a bad value.
                        ejected_ms: entry[2].as_u64().unwrap_or(0).min(3_600_000),
                        ejections: entry[3]
                            .as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(0),
                    });
                }
            }
        } else if msg["end"] == json!(true) {
            break;
        } else {
            return Err(UpgradeError::Protocol(msg.to_string()));
        }
    }
    tracing::info!(
        listeners = handover.listeners.len(),
        down = handover.down.len(),
        "binary upgrade: took over the old process's sockets"
    );
    Ok(Inherited {
        handover,
        predecessor: Predecessor { channel },
    })
}

/// The old process's side (see `upgrade::spawn_successor`).
pub fn spawn_successor(handover: Handover) -> Result<u32, UpgradeError> {
    let name = format!(
        "fulcrum-upgrade-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    );
    let listener = seqpacket()?;
    let addr = SocketAddrUnix::new_abstract_name(name.as_bytes()).map_err(channel_err)?;
    rnet::bind(&listener, &addr).map_err(channel_err)?;
    rnet::listen(&listener, 4).map_err(channel_err)?;
    // accept(2) honours SO_RCVTIMEO: the loop below wakes every POLL.
    sockopt::set_socket_timeout(&listener, Timeout::Recv, Some(POLL)).map_err(channel_err)?;

    let path = super::binary()?;
    let mut child = Command::new(&path)
        .args(std::env::args_os().skip(1))
        .env(ENV, &name)
        // The child pings the watchdog as the main PID to be.
        .env_remove("WATCHDOG_PID")
        .spawn()
        .map_err(|source| UpgradeError::Spawn {
            path: path.display().to_string(),
            source,
        })?;
    tracing::info!(pid = child.id(), binary = %path.display(), "binary upgrade: new process started");
    match hand_over(&listener, &mut child, &handover) {
        Ok(pid) => {
            // Reaped if it ever exits while this process still drains.
            std::thread::spawn(move || child.wait());
            Ok(pid)
        }
        Err(e) => {
            stop(&mut child);
            Err(e)
        }
    }
}

/// Accepts the child's connection, sends the sockets, waits for its verdict.
fn hand_over(
    listener: &OwnedFd,
    child: &mut Child,
    handover: &Handover,
) -> Result<u32, UpgradeError> {
    let pid = child.id();
    let deadline = Instant::now() + CONNECT_WITHIN;
    let channel = loop {
        match rnet::accept_with(listener, SocketFlags::CLOEXEC) {
            Ok(conn) => {
                let peer = sockopt::socket_peercred(&conn).map_err(channel_err)?;
                if u32::try_from(peer.pid.as_raw_nonzero().get()) == Ok(pid) {
                    break conn;
                }
                tracing::warn!(
                    peer = peer.pid.as_raw_nonzero().get(),
                    "binary upgrade: a process other than the new one connected: ignored"
                );
            }
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(e) => return Err(channel_err(e)),
        }
        exited(child)?;
        if Instant::now() > deadline {
            return Err(UpgradeError::NoConnect(CONNECT_WITHIN));
        }
    };
    sockopt::set_socket_timeout(&channel, Timeout::Send, Some(CONNECT_WITHIN))
        .map_err(channel_err)?;
    for l in &handover.listeners {
        for chunk in l.sockets.chunks(FDS_PER_MESSAGE) {
            let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(AsFd::as_fd).collect();
            let msg = json!({ "listener": l.name, "addr": l.addr.to_string() });
            send(&channel, &msg, &fds).map_err(UpgradeError::Channel)?;
        }
    }
    if let Some((addr, socket)) = &handover.admin {
        let msg = json!({ "admin": addr.to_string() });
        send(&channel, &msg, &[socket.as_fd()]).map_err(UpgradeError::Channel)?;
    }
    for chunk in handover.down.chunks(DOWN_PER_MESSAGE) {
        let down: Vec<Value> = chunk
            .iter()
            .map(|d| json!([d.pool, d.addr.to_string(), d.ejected_ms, d.ejections]))
            .collect();
        send(&channel, &json!({ "down": down }), &[]).map_err(UpgradeError::Channel)?;
    }
    send(&channel, &json!({ "end": true }), &[]).map_err(UpgradeError::Channel)?;

    sockopt::set_socket_timeout(&channel, Timeout::Recv, Some(POLL)).map_err(channel_err)?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        match recv(&channel) {
            Ok(Some((msg, _))) if msg.get("ready").is_some() => return Ok(pid),
            Ok(Some((msg, _))) => {
                let reason = msg["error"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| UpgradeError::Protocol(msg.to_string()))?;
                return Err(UpgradeError::Failed(reason));
            }
            Ok(None) => {
                // Closed: the child is exiting; its status says how.
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    exited(child)?;
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Err(UpgradeError::Protocol("channel closed before ready".into()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(UpgradeError::Channel(e)),
        }
        exited(child)?;
        if Instant::now() > deadline {
            return Err(UpgradeError::NotReady(READY_WITHIN));
        }
    }
}

/// `Err(Exited)` once the child has exited.
fn exited(child: &mut Child) -> Result<(), UpgradeError> {
    match child.try_wait() {
        Ok(Some(status)) => Err(UpgradeError::Exited(status)),
        Ok(None) => Ok(()),
        Err(e) => Err(channel_err(e)),
    }
}

/// Stops a child that failed the hand-over (if it still runs) and reaps it.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}
