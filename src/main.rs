//! The `fulcrum` command: run, check, demo. The only place `anyhow` is used.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fulcrum::Config;

/// mimalloc: the request path allocates small, short-lived buffers on every worker thread;
/// mimalloc's thread-local free lists serve them with less CPU than glibc malloc (README,
/// performance). Built without transparent huge pages (Cargo.toml): a proxy's heap is small
/// and scattered, and a huge page makes each touched byte cost 2 MiB of RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "fulcrum", version, about = "A load balancer and reverse proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run with a config file until SIGTERM / SIGINT.
    Run {
        #[arg(short, long, default_value = "/etc/fulcrum/fulcrum.toml")]
        config: PathBuf,
    },
    /// Validate a config file: print every error (file:line:col: key: message) and exit 1, or
    /// print "ok" and a summary and exit 0.
    Check {
        #[arg(short, long)]
        config: PathBuf,
        /// Also print what a reload from this (running) config to CONFIG would change:
        /// listeners, routes, pools and backends added, removed or changed, and draining.
        #[arg(long, value_name = "OLD")]
        diff_against: Option<PathBuf>,
    },
    /// Ask a running Fulcrum's admin API whether it is live (or ready): exit 0 on a 2xx
    /// answer, 1 otherwise. For probes where no HTTP client is installed (the container's
    /// HEALTHCHECK).
    Probe {
        /// A path on the admin API named by the config's `[global] admin` (`/live`,
        /// `/ready`), or a whole `http://IP:PORT/PATH` URL.
        #[arg(default_value = "/live")]
        target: String,
        /// The config whose admin address to ask (with a path as TARGET).
        #[arg(short, long, default_value = "/etc/fulcrum/fulcrum.toml")]
        config: PathBuf,
        /// How long to wait for the answer.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run a self-contained demo: in-process backends in two regions behind a balancer.
    Demo {
        /// Where the demo balancer listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the status page and admin API listen.
        #[arg(long, default_value = fulcrum::config::DEFAULT_ADMIN)]
        admin: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Check {
            config,
            diff_against,
        } => return check(&config, diff_against.as_deref()),
        Command::Run { config } => run(&config),
        Command::Demo { listen, admin } => demo(listen, admin),
        Command::Probe {
            target,
            config,
            timeout,
        } => {
            let url = match probe_url(&target, &config) {
                Ok(url) => url,
                Err(e) => {
                    eprintln!("fulcrum probe: {e:#}");
                    return ExitCode::from(1);
                }
            };
            return match probe(&url, timeout) {
                Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("fulcrum probe: {url}: {status}");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("fulcrum probe: {url}: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Start options from the environment, undocumented and for measurements only:
/// `FULCRUM_RUNTIME=shared` (one multi-thread runtime), `FULCRUM_WATCH=0` (no file watcher),
/// `FULCRUM_METRICS=off` (no request-path metric handles), `FULCRUM_TCP_COPY=1` (no splice).
fn options_from_env() -> fulcrum::Options {
    let var = |name: &str| std::env::var(name).ok();
    fulcrum::Options {
        threading: if var("FULCRUM_RUNTIME").as_deref() == Some("shared") {
            fulcrum::Threading::Shared
        } else {
            fulcrum::Threading::PerCore
        },
        watch_config: var("FULCRUM_WATCH").as_deref() != Some("0"),
        metrics: var("FULCRUM_METRICS").as_deref() != Some("off"),
        tcp_forwarding: if var("FULCRUM_TCP_COPY").as_deref() == Some("1") {
            fulcrum::Forwarding::Copy
        } else {
            fulcrum::Forwarding::Splice
        },
        admin_extension: None,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FULCRUM_LOG")
        // hickory-server logs every DNS query at info: a GeoDNS responder would flood the log.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn check(path: &std::path::Path, old: Option<&std::path::Path>) -> ExitCode {
    // The certificates and keys it names are read and checked too.
    let checked =
        Config::from_file(path).and_then(|config| fulcrum::check_files(&config).map(|()| config));
    match checked {
        Ok(config) => {
            println!("ok: {}: {}", path.display(), config.summary());
            let Some(old_path) = old else {
                return ExitCode::SUCCESS;
            };
            match Config::from_file(old_path) {
                Ok(old) => {
                    println!("changes from {}:", old_path.display());
                    print!("{}", fulcrum::config::diff(&old, &config));
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{e}");
                    }
                    eprintln!(
                        "{} error(s) in {} (--diff-against)",
                        errors.0.len(),
                        old_path.display()
                    );
                    ExitCode::from(1)
                }
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s) in {}", errors.0.len(), path.display());
            ExitCode::from(1)
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    // Started by a binary upgrade (SIGUSR2 to the old process): take its sockets first.
    let inherited =
        fulcrum::Inherited::from_env().context("cannot take over the old process's sockets")?;
    let config = match Config::from_file(path) {
        Ok(config) => config,
        Err(errors) => {
            let text: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            for e in &text {
                eprintln!("{e}");
            }
            let why = format!("{} config error(s), not starting", errors.0.len());
            if let Some(inherited) = inherited {
                inherited.fail(&format!("{why}:\n{}", text.join("\n")));
            }
            anyhow::bail!(why);
        }
    };
    let options = options_from_env();
    let handle = match inherited {
        None => fulcrum::start_with(config, options),
        Some(inherited) => fulcrum::start_inheriting(config, options, inherited),
    }
    .context("cannot start")?;
    handle.run_until_signal()?;
    Ok(())
}

fn demo(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let backends = fulcrum::demo::start_backends().context("cannot start the demo backends")?;
    let options = fulcrum::Options {
        admin_extension: Some(backends.admin_extension()),
        ..options_from_env()
    };
    let config = fulcrum::demo::config(listen, Some(admin), &backends.addrs);
    let handle = fulcrum::start_with(config, options).context("cannot start the demo balancer")?;
    let addr = handle.listener_addr("demo").unwrap_or(listen);
    println!("{}", fulcrum::demo::banner(addr, handle.admin_addr()));
    backends.drive_load(addr);
    handle.run_until_signal()?;
    drop(backends);
    Ok(())
}

/// `target` as a URL: as given, or the path on the admin API of the config at `config` (an
/// unspecified address is asked on loopback).
fn probe_url(target: &str, config: &std::path::Path) -> anyhow::Result<String> {
    if target.starts_with("http://") {
        return Ok(target.to_string());
    }
    let config = Config::from_file(config).map_err(|errors| {
        let text: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", text.join("\n"))
    })?;
    let mut admin = config
        .global
        .admin
        .context("the config has no admin API ([global] admin = \"\")")?;
    if admin.ip().is_unspecified() {
        admin.set_ip(match admin {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(format!("http://{admin}{target}"))
}

/// `GET url` (plain HTTP/1.0 to an `ip:port`) and the response's status code.
fn probe(url: &str, timeout: std::time::Duration) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority.parse().context("the host must be an ip:port")?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(n > 0, "connection closed before a response");
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(_) = response.parse(&head)? {
            return response.code.context("no status code");
        }
        anyhow::ensure!(head.len() < 64 * 1024, "response head too large");
    }
}
