//! Real PostgreSQL servers for the read/write split tests (the test checks first with
//! `require("postgresql")`): a primary from `initdb` and streaming replicas from
//! `pg_basebackup -R`, on free loopback ports (PostgreSQL has no "any port"), under a temporary
//! folder. The server refuses to run as root, so as root (CI) every
//! command runs as the `postgres` user through `runuser`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proxy::{accepts, free_addr};
use super::{eventually_blocking, require};

/// `PG_BIN`, else the newest `/usr/lib/postgresql/N/bin` (Debian's layout).
fn bin_dir() -> PathBuf {
    require("postgresql").expect("the test checks require(\"postgresql\") first")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Runs a PostgreSQL program (as `postgres` when root); panics with its output on failure.
fn pg(program: &str, args: &[&str]) {
    let path = bin_dir().join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary folder the server user owns; removed on drop.
#[derive(Debug)]
pub struct PgDir(tempfile::TempDir);

impl PgDir {
    pub fn new() -> PgDir {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        PgDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// One running server; stopped (immediate) on drop.
#[derive(Debug)]
pub struct Postgres {
    pub addr: SocketAddr,
    data: PathBuf,
    running: bool,
}

impl Postgres {
    /// `initdb` and start a primary in `dir/name`.
    pub fn primary(dir: &PgDir, name: &str) -> Postgres {
        let data = dir.path().join(name);
        let d = data.to_str().unwrap();
        pg("initdb", &["-D", d, "-U", "postgres", "--auth=trust", "-N"]);
        Postgres::configure_and_start(dir, data)
    }

    /// `pg_basebackup -R` from `primary` into `dir/name` and start it as a streaming replica.
    pub fn replica(dir: &PgDir, name: &str, primary: &Postgres) -> Postgres {
        let data = dir.path().join(name);
        let port = primary.addr.port().to_string();
        let d = data.to_str().unwrap();
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-D",
            d,
            "-R",
            "-X",
            "stream",
        ];
        pg("pg_basebackup", &args);
        Postgres::configure_and_start(dir, data)
    }

    fn configure_and_start(dir: &PgDir, data: PathBuf) -> Postgres {
        let addr = free_addr();
        // Appended settings win over earlier ones (a replica copies the primary's file).
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nwal_level = replica\nhot_standby = on\nwal_receiver_status_interval = 1s\n",
            addr.port(),
            dir.path().display()
        );
        let file = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(&conf);
        std::fs::write(&file, text).unwrap();
        let log = data.join("server.log");
        let (d, l) = (data.to_str().unwrap(), log.to_str().unwrap());
        pg("pg_ctl", &["-D", d, "-l", l, "-w", "start"]);
        eventually_blocking(
            Duration::from_secs(10),
            &format!("postgres to accept connections on {addr}"),
            || accepts(addr),
        );
        Postgres {
            addr,
            data,
            running: true,
        }
    }

    /// `pg_ctl promote`: a replica becomes a primary.
    pub fn promote(&self) {
        pg(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-w", "promote"],
        );
    }

    /// Stops the server at once.
    pub fn stop(&mut self) {
        if self.running {
            self.running = false;
            pg(
                "pg_ctl",
                &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
            );
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let d = self.data.to_str().unwrap_or_default().to_string();
            let _ =
                std::panic::catch_unwind(|| pg("pg_ctl", &["-D", &d, "-m", "immediate", "stop"]));
        }
    }
}

/// A client session as `postgres` through `addr` (Fulcrum or a server); `None` on failure.
pub async fn session(addr: SocketAddr) -> Option<tokio_postgres::Client> {
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres connect_timeout=2",
        addr.ip(),
        addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(client)
}

/// Runs one statement on a fresh session; the error as text.
pub async fn execute(addr: SocketAddr, sql: &str) -> Result<(), String> {
    let client = session(addr).await.ok_or("connect failed")?;
    client
        .batch_execute(sql)
        .await
        .map_err(|e| format!("{e:?}"))
}

/// `pg_is_in_recovery()` of whatever answers on `addr`; `None` when nothing does.
pub async fn in_recovery(addr: SocketAddr) -> Option<bool> {
    let client = session(addr).await?;
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .ok()?
        .try_get(0)
        .ok()
}
