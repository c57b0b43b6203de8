//! A `fulcrum run` whose stderr goes to a file, for tests where a process it starts (the new
//! process of a binary upgrade) inherits and shares it; log lines are waited for in the file.
//! Also a one-shot HTTP/1 status probe.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::eventually;
use super::proxy::binary;

const WAIT: Duration = Duration::from_secs(10);

/// A `fulcrum run` whose stderr goes to a file (its successor writes there too).
pub struct Logged {
    pub child: Child,
    log: PathBuf,
}

impl Logged {
    pub fn run(config: &Path, log: PathBuf) -> Logged {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary())
            .args(["run", "-c", config.to_str().unwrap()])
            .env("FULCRUM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Logged { child, log }
    }

    pub fn text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits for a log line containing `needle` (the `nth`, counting from 0) and returns it.
    pub async fn line(&self, needle: &str, nth: usize) -> String {
        eventually(WAIT, needle, || async {
            self.text()
                .lines()
                .filter(|l| l.contains(needle))
                .nth(nth)
                .map(String::from)
        })
        .await
    }

    pub fn signal(&self, pid: u32, name: &str) {
        let status = Command::new("sh")
            .args(["-c", "kill -s \"$0\" \"$1\"", name])
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid} failed");
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A successor it started (its pid is in the log) goes too.
        for line in self
            .text()
            .lines()
            .filter(|l| l.contains("new process started"))
        {
            if let Some(pid) = field(line, "pid=") {
                let _ = Command::new("sh")
                    .args(["-c", "kill -9 \"$0\"", &pid])
                    .status();
            }
        }
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
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

/// The value after `key` in a log line, up to the next space.
pub fn field(line: &str, key: &str) -> Option<String> {
    let rest = line.split_once(key)?.1;
    Some(
        rest.split([' ', ')', ']'])
            .next()?
            .trim_matches('"')
            .to_string(),
    )
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// `GET http://addr/path` on a fresh connection: the status, or `None` when nothing answered.
pub async fn status_of(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", addr.to_string());
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).ok()?)
        .await
        .ok()?;
    Some(resp.status().as_u16())
}
