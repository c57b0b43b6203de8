//! The `fulcrum` command: run, check, demo. The only place `anyhow` is used.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fulcrum::Config;

/// mimalloc: the request path allocates small, short-lived buffers on every worker thread;
/// mimalloc's thread-local free lists serve them with less CPU than glibc malloc (README,
/// performance).
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
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
    let config = Config::from_file(path).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        anyhow::anyhow!("{} config error(s), not starting", errors.0.len())
    })?;
    let handle = fulcrum::start_with(config, options_from_env()).context("cannot start")?;
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
