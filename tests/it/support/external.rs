//! What some tests need from outside Rust: `redis-server`, PostgreSQL, `promtool`, Chromium,
//! the country database and `dig`. `.ci/run` installs all of them; on a machine without one, the tests
//! that need it skip (one line on stderr) instead of failing, unless
//! `FULCRUM_TEST_REQUIRE_ALL=1` (set by `.ci/run`) says nothing may be skipped.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Set (to anything but "" or "0") by CI: a missing requirement fails the test.
pub const REQUIRE_ALL: &str = "FULCRUM_TEST_REQUIRE_ALL";

/// Where `name` is: a program's path, PostgreSQL's `bin` folder, the database file. `None` when
/// absent, after one line on the real stderr (not the test's captured output, so a plain
/// `cargo test` shows it):
///
/// `skipped: redis-server not installed (apt-get install redis-server; .ci/run installs it) [TEST]`
///
/// With `FULCRUM_TEST_REQUIRE_ALL=1` it panics with the same words instead.
///
/// `name`: `"redis-server"`, `"postgresql"`, `"promtool"`, `"chromium"`, `"python grpc"`
/// (python3 importing grpcio and grpcio-health-checking) or `"country database"`.
#[track_caller]
pub fn require(name: &str) -> Option<PathBuf> {
    let (found, missing) = match name {
        "redis-server" => (
            on_path(name),
            installed(name, "apt-get install redis-server"),
        ),
        "promtool" => (on_path(name), installed(name, "apt-get install prometheus")),
        "chromium" => (on_path(name), installed(name, "apt-get install chromium")),
        "curl" => (on_path(name), installed(name, "apt-get install curl")),
        "dig" => (on_path(name), installed(name, "apt-get install bind9-dnsutils")),
        "openssl" => (on_path(name), installed(name, "apt-get install openssl")),
        "testssl" => (on_path(name), installed(name, "apt-get install testssl.sh")),
        "pebble" => (on_path(name), installed(name, "apt-get install pebble")),
        "python grpc" => (
            python_grpc(),
            "python3 with grpcio and grpcio-health-checking not installed (pip install grpcio grpcio-health-checking; .ci/run installs them)".to_string(),
        ),
        "postgresql" => (
            postgres_bin(),
            installed(name, "apt-get install postgresql"),
        ),
        "country database" => {
            let path = country_database();
            let missing = format!(
                "country database not found at {} (.ci/fetch-test-data fetches it; .ci/run runs it)",
                path.display()
            );
            (path.is_file().then_some(path), missing)
        }
        other => panic!("require: unknown requirement {other:?}"),
    };
    if found.is_some() {
        return found;
    }
    if std::env::var_os(REQUIRE_ALL).is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{missing}, and {REQUIRE_ALL} forbids skipping");
    }
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(|n| format!(" [{n}]"))
        .unwrap_or_default();
    // Written to the stderr handle, not with eprintln!: the test harness captures the macros.
    let _ = writeln!(std::io::stderr(), "skipped: {missing}{test}");
    None
}

/// `python3` when it imports grpcio and its health service.
fn python_grpc() -> Option<PathBuf> {
    let python = on_path("python3")?;
    let ok = std::process::Command::new(&python)
        .args(["-c", "import grpc, grpc_health.v1.health"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

fn installed(program: &str, install: &str) -> String {
    format!("{program} not installed ({install}; .ci/run installs it)")
}

/// `program` in a `PATH` folder, as the shell would find it.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `PG_BIN`, else the newest `/usr/lib/postgresql/N/bin` (Debian's layout), if it has `initdb`.
fn postgres_bin() -> Option<PathBuf> {
    let dir = match std::env::var_os("PG_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let newest = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .max()?;
            PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
        }
    };
    is_executable(&dir.join("initdb")).then_some(dir)
}

/// `FULCRUM_TEST_MMDB`, else `target/test-data/geo-whois-asn-country.mmdb`, where
/// `.ci/fetch-test-data` puts @ip-location-db/geo-whois-asn-country-mmdb (CC0).
fn country_database() -> PathBuf {
    std::env::var_os("FULCRUM_TEST_MMDB").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-data/geo-whois-asn-country.mmdb")
        },
        PathBuf::from,
    )
}
