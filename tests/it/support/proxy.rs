//! Starting Fulcrum: in-process through the library, or the real binary with a config file.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use fulcrum::config::Config;
use fulcrum::config::{AccessLogTarget, BackendConfig, Global, ListenerConfig, PoolConfig, PoolId};

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

/// A free loopback port (bound and released), for the few configs that must name their port
/// before the process starts; everything else binds port 0 and reads the port back.
pub fn free_addr() -> SocketAddr {
    refused_addr()
}

pub fn backend(addr: SocketAddr, weight: u32) -> BackendConfig {
    BackendConfig {
        address: addr,
        name: None,
        weight,
        region: None,
    }
}

/// A pool of equally weighted backends.
pub fn pool(name: &str, addrs: &[SocketAddr]) -> PoolConfig {
    PoolConfig::new(name, addrs.iter().map(|a| backend(*a, 1)).collect())
}

/// A listener named "web" on 127.0.0.1:0 whose default pool is the config's first pool.
pub fn listener() -> ListenerConfig {
    ListenerConfig::http("web", any_port(), PoolId::new(0))
}

/// A quiet config (no access log, short grace, two workers).
pub fn config(listener: ListenerConfig, pools: Vec<PoolConfig>) -> Config {
    Config {
        source: None,
        fingerprint: None,
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
        gslb: None,
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
        Proxy::start_with(config, fulcrum::Options::default())
    }

    /// Started with start options (an admin extension, a forwarding mode).
    pub fn start_with(config: Config, options: fulcrum::Options) -> Proxy {
        let name = config.listeners[0].name.clone();
        let handle = fulcrum::start_with(config, options).unwrap();
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
        Proxy::start(config(listener(), vec![pool("p", addrs)]))
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

/// A config file's text: `listeners` (name, bind), all with the default pool "p" over
/// `backends`; no access log, two workers, a 5 s shutdown grace.
pub fn toml_text(listeners: &[(&str, SocketAddr)], backends: &[SocketAddr]) -> String {
    let mut s =
        String::from("[global]\naccess_log = \"off\"\nworkers = 2\nshutdown_grace = \"5s\"\n");
    for (name, bind) in listeners {
        s += &format!(
            "\n[[listener]]\nname = \"{name}\"\nbind = \"{bind}\"\nprotocol = \"http\"\npool = \"p\"\n"
        );
    }
    let list: Vec<String> = backends
        .iter()
        .map(|a| format!("{{ address = \"{a}\", weight = 1 }}"))
        .collect();
    s += &format!(
        "\n[[pool]]\nname = \"p\"\nbackends = [{}]\n",
        list.join(", ")
    );
    s
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
    /// The listeners' bound addresses, from the "fulcrum started" log line.
    listeners: Vec<(String, SocketAddr)>,
    /// Reads stderr until the process closes it; yields all of it.
    reader: Option<JoinHandle<String>>,
    stderr: String,
}

/// How long the binary may take to log that it started.
const START_LIMIT: Duration = Duration::from_secs(10);

impl Process {
    /// Spawns `fulcrum ARGS` and waits (bounded) until it logs "fulcrum started".
    pub fn spawn(args: &[&str]) -> Process {
        Process::spawn_with_env(args, &[])
    }

    /// [`spawn`](Self::spawn) with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(binary())
            .args(args)
            // The readiness signal is an info line: make sure it is logged.
            .env("FULCRUM_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (started, on_start) = mpsc::channel();
        let reader = std::thread::spawn(move || read_stderr(stderr, &started));
        let mut p = Process {
            child,
            listeners: Vec::new(),
            reader: Some(reader),
            stderr: String::new(),
        };
        match on_start.recv_timeout(START_LIMIT) {
            Ok(listeners) => p.listeners = listeners,
            Err(e) => {
                // Stopped (or never started): its stderr says why.
                let _ = p.child.kill();
                let status = p.child.wait().ok();
                let stderr = p.stderr();
                panic!("fulcrum {args:?} did not start within {START_LIMIT:?} ({e}; exit {status:?}): {stderr}");
            }
        }
        p
    }

    /// `fulcrum run -c PATH`, once started.
    pub fn run(config: &Path) -> Process {
        Process::spawn(&["run", "-c", config.to_str().unwrap()])
    }

    /// Where the listener `name` was bound at start (the real port for a `:0` bind).
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener {name:?} in {:?}", self.listeners))
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

    /// What the process wrote to stderr (all of it once it exited, "" before).
    pub fn stderr(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_some() {
            if let Some(reader) = self.reader.take() {
                self.stderr = reader.join().unwrap_or_default();
            }
        }
        self.stderr.clone()
    }
}

/// Collects `stderr`; at the "fulcrum started" line, sends the listeners it names.
fn read_stderr(stderr: ChildStderr, started: &mpsc::Sender<Vec<(String, SocketAddr)>>) -> String {
    let mut all = String::new();
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut sent = false;
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let text = strip_ansi(&String::from_utf8_lossy(&line));
        if !sent && text.contains("fulcrum started") {
            sent = true;
            let _ = started.send(started_listeners(&text));
        }
        all.push_str(&text);
        line.clear();
    }
    all
}

/// The `listeners=[("web", 127.0.0.1:41234), ...]` field of the "fulcrum started" line.
fn started_listeners(line: &str) -> Vec<(String, SocketAddr)> {
    let field = line.split_once("listeners=").map_or("", |(_, rest)| rest);
    field
        .split("(\"")
        .skip(1)
        .filter_map(|entry| {
            let (name, rest) = entry.split_once("\", ")?;
            let addr = rest.split(')').next()?.parse().ok()?;
            Some((name.to_string(), addr))
        })
        .collect()
}

/// `text` without terminal colour sequences (the log is coloured even into a pipe).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters... final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
