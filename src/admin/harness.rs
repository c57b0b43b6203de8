//! The admin request handler without a network, for the `admin` fuzz target (`fuzz/`).
//!
//! Why a harness of its own: the fuzzer must reach [`Admin::handle`] (routing, percent
//! decoding, the token check) millions of times a minute, which a socket per request would
//! not allow, and the admin server's internals stay private to this module. The harness owns
//! a small current-thread runtime, a snapshot of a fixed one-pool config and a reloader with no
//! config file (so `POST /api/v1/reload` answers without touching the filesystem), and hands
//! back only the response's status.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::Request;

use super::Admin;
use crate::config::Config;
use crate::listener::Sockets;
use crate::reload::Reloader;
use crate::snapshot::Live;
use crate::splice::Forwarding;

/// The bearer token the harness's admin server expects.
pub const TOKEN: &str = "fuzz-token";

/// The config behind the harness: one pool of two backends (nothing connects to them), one
/// listener (never bound).
const CONFIG: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "web"

[[pool]]
name = "web"
backends = [{ address = "127.0.0.1:9" }, { address = "127.0.0.1:10" }]
"#;

/// Why the harness could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the harness's config does not validate: {0}")]
    Config(String),
}

/// An admin server that answers requests handed to it directly.
pub struct Harness {
    admin: Arc<Admin>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

impl Harness {
    /// An admin server guarded by [`TOKEN`].
    pub fn new() -> Result<Harness, HarnessError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HarnessError::Runtime)?;
        let mut config = Config::from_toml(CONFIG, std::path::Path::new("harness.toml"))
            .map_err(|e| HarnessError::Config(e.to_string()))?;
        // No file: a reload through the API is refused (409) instead of reading one.
        config.source = None;
        config.fingerprint = None;
        let shared = Arc::new(Live::new(&config, true, Forwarding::Copy));
        let (sockets, _receivers) = Sockets::new(0);
        let reloader = {
            let _guard = runtime.enter();
            Arc::new(Reloader::new(
                Arc::clone(&shared),
                config,
                sockets,
                runtime.handle().clone(),
                (Default::default(), None),
            ))
        };
        let admin = Arc::new(Admin {
            shared,
            reloader,
            extension: None,
            history: crate::history::History::new(),
            token: Some(TOKEN.as_bytes().to_vec()),
            started: Instant::now(),
            started_at: SystemTime::now(),
        });
        Ok(Harness { admin, runtime })
    }

    /// The status the admin server answers `req` with (its body is not read by any endpoint).
    pub fn status<B>(&self, req: Request<B>) -> u16 {
        let admin = Arc::clone(&self.admin);
        self.runtime.block_on(admin.handle(req)).status().as_u16()
    }

    /// Whether `method` on `path` is one of the static files served without the token.
    pub fn is_public(method: &http::Method, path: &str) -> bool {
        method == http::Method::GET && matches!(path, "/" | "/status.js" | "/status.css")
    }
}
