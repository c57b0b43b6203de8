//! Raw file -> validated `Config`, collecting every error.

use std::path::Path;

use super::{Config, ConfigErrors};

pub(super) fn validate(_text: &str, _path: &Path) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(Vec::new()))
}
