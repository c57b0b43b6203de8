//! Real `redis-server` processes for the read/write split tests (the test checks first with
//! `require("redis-server")`), and a minimal RESP client: inline commands, one reply read.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::eventually_blocking;
use super::proxy::{accepts, free_addr};

/// A `redis-server` on a loopback port, without persistence; killed on drop.
#[derive(Debug)]
pub struct Redis {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a primary, or a replica of `primary`; returns once it accepts connections.
    /// A fixed free port: `--port 0` would make redis-server listen on no TCP port at all.
    pub fn start(primary: Option<SocketAddr>) -> Redis {
        let addr = free_addr();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &addr.port().to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = primary {
            cmd.args(["--replicaof", "127.0.0.1", &p.port().to_string()]);
        }
        let child = cmd.spawn().expect("cannot run redis-server");
        eventually_blocking(
            Duration::from_secs(10),
            &format!("redis-server to accept connections on {addr}"),
            || accepts(addr),
        );
        Redis {
            addr,
            child,
            _dir: dir,
        }
    }

    /// Stops the server now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends one inline command on a new connection and returns the reply (a status line, an
/// error line, or a bulk string's value); "" when the connection failed or closed.
pub async fn command(addr: SocketAddr, cmd: &str) -> String {
    let run = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply).into_owned();
            if let Some(bulk) = text.strip_prefix('$') {
                let (len, rest) = bulk.split_once("\r\n")?;
                let Ok(len) = len.parse::<usize>() else {
                    return Some(String::new()); // $-1: nil
                };
                if rest.len() >= len + 2 {
                    return Some(rest[..len].to_string());
                }
            } else if text.ends_with("\r\n") {
                return Some(text.trim_end().to_string());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}
