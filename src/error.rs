//! `crate::Error`: what `start` and the CLI can fail with, wrapping the module errors.

use crate::config::ConfigErrors;
use crate::listener::BindError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot start a runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
}
