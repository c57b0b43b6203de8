//! Starting Fulcrum: in-process through the library, or the real binary with a config file.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub use fulcrum::config::Config;
use fulcrum::config::{AccessLogTarget, BackendConfig, Global, ListenerConfig, PoolConfig};

use super::eventually_blocking;

/// The loopback address with port 0.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An address nothing listens on (bound once, then closed): connecting is refused.
pub fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A free loopback port (bound and released), for configs that need a fixed port.
pub fn free_addr() -> SocketAddr {
    refused_addr()
}

pub fn backend(addr: SocketAddr, weight: u32) -> BackendConfig {
    BackendConfig {
        address: addr,
        weight,
        region: None,
    }
}

/// A pool of equally weighted backends.
pub fn pool(name: &str, addrs: &[SocketAddr]) -> PoolConfig {
    PoolConfig::new(name, addrs.iter().map(|a| backend(*a, 1)).collect())
}

/// A listener named "web" on 127.0.0.1:0 whose default pool is `pool`.
pub fn listener(pool: &str) -> ListenerConfig {
    ListenerConfig::http("web", any_port(), pool)
}

/// A quiet config (no access log, short grace, two workers).
pub fn config(listener: ListenerConfig, pools: Vec<PoolConfig>) -> Config {
    Config {
        source: None,
        global: Global {
            workers: 2,
            access_log: AccessLogTarget::Off,
            shutdown_grace: Duration::from_secs(2),
            ..Global::default()
        },
        listeners: vec![listener],
        pools,
        regions: Vec::new(),
        geo: Default::default(),
    }
}

/// Fulcrum started through the library; dropped = stopped (without waiting).
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    pub handle: Option<fulcrum::Handle>,
}

impl Proxy {
    pub fn start(config: Config) -> Proxy {
        let name = config.listeners[0].name.clone();
        let handle = fulcrum::start(config).unwrap();
        let addr = handle.listener_addr(&name).unwrap();
        Proxy {
            addr,
            handle: Some(handle),
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to `shutdown_grace`), and returns
    /// once stopped.
    pub async fn shutdown(mut self) {
        let handle = self.handle.take().unwrap();
        tokio::task::spawn_blocking(move || handle.shutdown())
            .await
            .unwrap();
    }

    /// A one-pool proxy on 127.0.0.1:0 over `addrs`.
    pub fn simple(addrs: &[SocketAddr]) -> Proxy {
        Proxy::start(config(listener("p"), vec![pool("p", addrs)]))
    }
}

/// The path of the built `fulcrum` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_fulcrum")
}

/// Runs `fulcrum ARGS` to completion: (status, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Whether something accepts TCP connections on `addr`.
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A spawned `fulcrum` process; killed on drop if still running.
#[derive(Debug)]
pub struct Process {
    pub child: Child,
}

impl Process {
    /// Spawns `fulcrum ARGS` and waits (bounded) until `ready` accepts connections.
    pub fn spawn(args: &[&str], ready: SocketAddr) -> Process {
        let child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut p = Process { child };
        let what = format!("fulcrum to accept connections on {ready}");
        eventually_blocking(Duration::from_secs(10), &what, || {
            if let Some(status) = p.child.try_wait().unwrap() {
                let stderr = p.stderr();
                panic!("fulcrum exited ({status}) before accepting on {ready}: {stderr}");
            }
            accepts(ready)
        });
        p
    }

    /// `fulcrum run -c PATH`, ready when `ready` accepts connections.
    pub fn run(config: &Path, ready: SocketAddr) -> Process {
        Process::spawn(&["run", "-c", config.to_str().unwrap()], ready)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) with the shell's `kill` builtin (a
    /// `kill` program is not on every machine).
    pub fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .args(["-c", "kill -s \"$0\" \"$1\"", name])
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit; panics if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        eventually_blocking(within, "fulcrum to exit", || self.child.try_wait().unwrap())
    }

    /// What the process wrote to stderr (complete only after it exited).
    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if self.child.try_wait().ok().flatten().is_some() {
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut s);
            }
        }
        s
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
