//! Binary upgrade (SIGUSR2): the running process starts the binary at its path with the same
//! arguments, hands it every listening socket, waits until it is ready, then drains and exits.
//!
//! Why this shape:
//! - **Same kernel sockets, not new binds.** A socket of an SO_REUSEPORT group that closes
//!   resets the connections queued on it; handing the very sockets over (duplicates of the
//!   ones the workers hold, `listener::Sockets`) means nothing queued is ever lost, and the
//!   old process simply stops calling `accept` on them.
//! - **SCM_RIGHTS over a Unix socket, not inherited descriptor numbers.** Turning a raw
//!   descriptor number into a socket is `unsafe` (`OwnedFd::from_raw_fd`); descriptors that
//!   arrive in a `recvmsg` are owned from the start (rustix gives `OwnedFd`s), and the crate
//!   stays `unsafe_code = "forbid"`. The channel is a `SOCK_SEQPACKET` socket (message
//!   boundaries kept) in the abstract namespace: no file to clean up, and the old process hands
//!   the sockets only to the peer whose `SO_PEERCRED` pid is the child it started.
//! - **The same channel carries the verdict.** The new process answers `ready` once it listens
//!   and its first round of health checks is done (what `/ready` waits for), or `error` with
//!   the reason (a config that does not validate, a start error); the channel closing, the
//!   child exiting or a deadline without an answer are failures too. On any failure the old
//!   process logs the reason, stops the child if it still runs, and keeps serving.
//! - **Health is handed over.** The backends the old process has down start down in the new
//!   one (`health::checker::down_set` / `start_down`): its first checks never send them traffic.
//!
//! Under systemd the old process (the main PID) sends `MAINPID=<new>`, and the new one sends
//! `MAINPID=` and `READY=1` itself (this needs `NotifyAccess=all`, as the packaged unit has);
//! the new process gets no `WATCHDOG_PID` so it pings the watchdog.
//!
//! Messages are JSON objects. Old to new: `{"listener": name, "addr": a}` with that
//! listener's sockets (up to [`FDS_PER_MESSAGE`] a message; more messages for more),
//! `{"admin": a}` with the admin socket, `{"down": [[pool, address, ejected_ms, ejections],
//! ...]}`, then
//! `{"end": true}`. New to old: `{"ready": pid}` or `{"error": text}`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::health::checker::Down;
use crate::listener::InheritedListener;

/// The environment variable that names the old process's channel (abstract socket name).
pub const ENV: &str = "FULCRUM_UPGRADE";
/// How long the new process may take to connect to the old one.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// How long the new process may take to be ready (listening and first health checks done).
pub const READY_WITHIN: Duration = Duration::from_secs(120);
/// Descriptors in one message (the kernel's limit, SCM_MAX_FD, is 253).
pub const FDS_PER_MESSAGE: usize = 200;
/// Down backends named in one message.
const DOWN_PER_MESSAGE: usize = 500;
/// The largest message either side sends.
const MAX_MESSAGE: usize = 64 * 1024;

/// What the old process hands over: its listening sockets, the admin socket, and the
/// backends it has down.
#[derive(Debug, Default)]
pub struct Handover {
    pub listeners: Vec<InheritedListener>,
    pub admin: Option<(SocketAddr, std::net::TcpListener)>,
    pub down: Vec<Down>,
}

/// Why a binary upgrade failed (the old process keeps serving), or why the new process could
/// not take over its predecessor's sockets.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("binary upgrade: cannot find this process's binary")]
    Exe(#[source] io::Error),
    #[error("binary upgrade: cannot start {path}")]
    Spawn {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("binary upgrade: hand-over channel")]
    Channel(#[source] io::Error),
    #[error("binary upgrade: the new process exited ({0}) before it was ready")]
    Exited(std::process::ExitStatus),
    #[error("binary upgrade: the new process failed: {0}")]
    Failed(String),
    #[error("binary upgrade: the new process did not connect within {0:?}; stopped it")]
    NoConnect(Duration),
    #[error("binary upgrade: the new process was not ready within {0:?}; stopped it")]
    NotReady(Duration),
    #[error("binary upgrade: unexpected message: {0}")]
    Protocol(String),
    #[error("binary upgrade: not supported on this platform")]
    Unsupported,
}

/// In the new process: what the old one handed over, and the channel to answer it on.
#[derive(Debug)]
pub struct Inherited {
    pub(crate) handover: Handover,
    pub(crate) predecessor: Predecessor,
}

/// The channel to the old process, kept until the new one is ready (or failed).
#[derive(Debug)]
pub struct Predecessor {
    #[cfg(target_os = "linux")]
    channel: std::os::fd::OwnedFd,
}

impl Inherited {
    /// `Ok(None)` unless this process was started by a binary upgrade ([`ENV`] set); then
    /// connects to the old process and takes its sockets.
    pub fn from_env() -> Result<Option<Inherited>, UpgradeError> {
        let Some(name) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        #[cfg(target_os = "linux")]
        {
            wire::receive(name.as_encoded_bytes()).map(Some)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            Err(UpgradeError::Unsupported)
        }
    }

    /// Tells the old process this one cannot start, and why; it keeps serving.
    pub fn fail(self, reason: &str) {
        self.predecessor.fail(reason);
    }
}

impl Predecessor {
    /// Tells the old process to stop accepting and drain: this one serves now.
    pub fn ready(self) {
        #[cfg(target_os = "linux")]
        wire::answer(
            &self.channel,
            &serde_json::json!({ "ready": std::process::id() }),
        );
    }

    /// Tells the old process this one failed, and why.
    pub fn fail(self, reason: &str) {
        // A reason longer than a message would be cut by the kernel: keep its start.
        let mut reason = reason.to_string();
        if reason.len() > MAX_MESSAGE / 2 {
            let mut end = MAX_MESSAGE / 2;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        #[cfg(target_os = "linux")]
        wire::answer(&self.channel, &serde_json::json!({ "error": reason }));
    }
}

/// In the old process (blocking, minutes at most): starts the new process, hands `handover`
/// over, and returns its pid once it is ready. On `Err` the child is gone and nothing here
/// changed: the caller keeps serving.
pub fn spawn_successor(handover: Handover) -> Result<u32, UpgradeError> {
    #[cfg(target_os = "linux")]
    {
        wire::spawn_successor(handover)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = handover;
        Err(UpgradeError::Unsupported)
    }
}

/// Asks process `pid` (a new process this one started) to stop gracefully (SIGTERM).
pub fn terminate(pid: u32) {
    #[cfg(target_os = "linux")]
    {
        let pid = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pid;
}

/// The binary to start: this process's, at its path. When a package upgrade replaced the
/// file, `/proc/self/exe` names the deleted one ("... (deleted)"): the new file is at the path.
pub fn binary() -> Result<std::path::PathBuf, UpgradeError> {
    let exe = std::env::current_exe().map_err(UpgradeError::Exe)?;
    Ok(
        match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(path) => std::path::PathBuf::from(path),
            None => exe,
        },
    )
}

#[cfg(target_os = "linux")]
mod wire;
