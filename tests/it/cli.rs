//! `fulcrum check`: every error with file:line and key, exit 1; a good file prints "ok".

use crate::support::proxy::{run_cli, write_file};

/// Lines 4 (a missing pool) and 9 (weight = 0) are wrong.
const TWO_ERRORS: &str = r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "missing"

[[pool]]
name = "p"
backends = [
  { address = "127.0.0.1:9001", weight = 0 },
]
"#;

/// Line 3 has an unknown key.
const UNKNOWN_KEY: &str = r#"[global]
access_log = "off"
colour = "blue"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "p"

[[pool]]
name = "p"
backends = [{ address = "127.0.0.1:9001" }]
"#;

/// Unknown keys in three sections: lines 3 (global), 8 (listener) and 15 (pool.health).
const THREE_UNKNOWN_KEYS: &str = r#"[global]
access_log = "off"
colour = "blue"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
binds = "127.0.0.1:8081"
pool = "p"

[[pool]]
name = "p"
backends = [{ address = "127.0.0.1:9001" }]
[pool.health]
intervall = "1s"
"#;

const VALID: &str = r#"[global]
access_log = "off"
shutdown_grace = "5s"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "p"

[[listener.route]]
host = "*.example.com"
pool = "p"

[[pool]]
name = "p"
balance = "least_conn"
retries = 1
request_timeout = "2s"
backends = [{ address = "127.0.0.1:9001", weight = 3 }, { address = "127.0.0.1:9002" }]
"#;

/// The stderr line that starts with `FILE:LINE:`.
fn error_line<'a>(stderr: &'a str, file: &str, line: usize) -> Option<&'a str> {
    let prefix = format!("{file}:{line}:");
    stderr.lines().find(|l| l.starts_with(&prefix))
}

#[test]
fn check_reports_every_error_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "bad.toml", TWO_ERRORS);
    let file = path.to_str().unwrap();
    let (status, _, stderr) = run_cli(&["check", "-c", file]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let pool = error_line(&stderr, file, 4).unwrap_or_else(|| panic!("no {file}:4: in {stderr}"));
    assert!(pool.contains("pool"), "{pool}");
    assert!(pool.contains("missing"), "{pool}");
    let weight = error_line(&stderr, file, 9).unwrap_or_else(|| panic!("no {file}:9: in {stderr}"));
    assert!(weight.contains("weight"), "{weight}");
}

#[test]
fn check_reports_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "unknown.toml", UNKNOWN_KEY);
    let file = path.to_str().unwrap();
    let (status, _, stderr) = run_cli(&["check", "-c", file]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let line = error_line(&stderr, file, 3).unwrap_or_else(|| panic!("no {file}:3: in {stderr}"));
    assert!(line.contains("colour"), "{line}");
}

/// serde stops at the first unknown key; `check` reports all of them in one run.
#[test]
fn check_reports_every_unknown_key_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "unknown3.toml", THREE_UNKNOWN_KEYS);
    let file = path.to_str().unwrap();
    let (status, _, stderr) = run_cli(&["check", "-c", file]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    for (line, col, key) in [
        (3, 1, "global: colour"),
        (8, 1, "listener: binds"),
        (15, 1, "pool: health: intervall"),
    ] {
        let want = format!("{file}:{line}:{col}: {key}: unknown key");
        assert!(
            stderr.lines().any(|l| l.starts_with(&want)),
            "no {want:?} in {stderr}"
        );
    }
}

#[test]
fn check_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "good.toml", VALID);
    let (status, stdout, stderr) = run_cli(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("ok"), "{stdout}");
}

#[test]
fn check_rejects_a_missing_file() {
    let (status, _, stderr) = run_cli(&["check", "-c", "/nonexistent/fulcrum.toml"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/fulcrum.toml"), "{stderr}");
}

#[test]
fn repository_example_config_passes_check() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/fulcrum.toml");
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing (the repository ships its reference config there)"
    );
    let (status, stdout, stderr) = run_cli(&["check", "-c", path]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("ok"), "{stdout}");
}

/// The command the example config's header tells readers to run works as written.
#[test]
fn the_check_command_in_the_example_configs_header_works() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/config/fulcrum.toml")).unwrap();
    let command = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| {
            l.split('`')
                .nth(1)
                .filter(|c| c.starts_with("fulcrum check"))
        })
        .expect("the header names a `fulcrum check ...` command");
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let out = std::process::Command::new(crate::support::proxy::binary())
        .args(&args)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{command}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
