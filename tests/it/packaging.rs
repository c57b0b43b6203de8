//! The README's install and run blocks are what CI runs: every command line of a block marked
//! `<!-- ci: SCRIPT -->` appears verbatim in SCRIPT or in `.ci/run`, so a README edit that
//! CI does not follow (or a script change the README misses) fails here, not in a user's
//! shell. Also: `fulcrum probe` answers for `/live` and `/ready` from the config's admin
//! address, as the container's HEALTHCHECK uses it.

use std::path::Path;
use std::time::Duration;

use crate::support::eventually_blocking;
use crate::support::proxy::{free_addr, run_cli, write_file, Process};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// (script, command lines) of every `<!-- ci: SCRIPT -->` block of the README.
fn ci_blocks(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(script) = line
            .trim()
            .strip_prefix("<!-- ci: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        assert!(
            lines.next().is_some_and(|l| l.starts_with("```")),
            "{script}: a fenced block must follow"
        );
        let commands = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .map(|l| l.split(" #").next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        blocks.push((script.to_string(), commands));
    }
    blocks
}

#[test]
fn readme_install_blocks_are_what_ci_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let blocks = ci_blocks(&readme);
    let scripts: Vec<&str> = blocks.iter().map(|(s, _)| s.as_str()).collect();
    for expected in [
        "packaging/test-deb.sh",
        "packaging/test-container.sh",
        "packaging/test-kubernetes.sh",
    ] {
        assert!(
            scripts.contains(&expected),
            "no README block for {expected}: {scripts:?}"
        );
        assert!(ci.contains(expected), ".ci/run does not run {expected}");
    }
    for (script, commands) in &blocks {
        let text = std::fs::read_to_string(root().join(script)).unwrap();
        for command in commands {
            assert!(
                text.contains(command.as_str()) || ci.contains(command.as_str()),
                "README block for {script}: `{command}` is run neither by {script} nor by .ci/run"
            );
        }
    }
}

#[test]
fn probe_asks_the_admin_api_named_by_the_config() {
    let admin = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "fulcrum.toml",
        &format!(
            r#"[global]
access_log = "off"
admin = "{admin}"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "p"
[[pool]]
name = "p"
backends = [{{ address = "127.0.0.1:9" }}]
"#
        ),
    );
    let config = path.to_str().unwrap();
    let probe = |target: &str| run_cli(&["probe", "-c", config, target]).0.code();
    // Nothing listens there yet: exit 1.
    assert_eq!(probe("/live"), Some(1));

    let mut p = Process::run(&path);
    assert_eq!(probe("/live"), Some(0));
    eventually_blocking(Duration::from_secs(5), "/ready 200", || {
        probe("/ready") == Some(0)
    });
    assert_eq!(probe(&format!("http://{admin}/live")), Some(0));
    assert_eq!(probe("/no-such-endpoint"), Some(1));
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(5)).success());
}

/// The config the .deb and the image install passes `check` as shipped.
#[test]
fn packaged_config_passes_check() {
    let path = root().join("packaging/fulcrum.toml");
    let (status, stdout, stderr) = run_cli(&["check", "-c", path.to_str().unwrap()]);
    assert!(status.success(), "{stdout}{stderr}");
}
