//! `crate::Error`: what `start` and the CLI can fail with, wrapping the module errors.

use crate::config::ConfigErrors;
use crate::listener::BindError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot start a runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    #[error(transparent)]
    Gslb(#[from] crate::gslb::GslbError),
    #[error("cannot open the access log")]
    AccessLog(#[source] std::io::Error),
}
