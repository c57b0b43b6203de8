//! Config errors that name file, line, column and key.

use std::fmt;
use std::path::Path;

/// One problem in a config file: `fulcrum.toml:14:1: pool "web": backend "10.0.0.1:80": weight: must be > 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub col: usize,
    /// Where in the config, e.g. `pool "web": backend "10.0.0.1:80": weight`.
    pub key: String,
    pub message: String,
}

/// Every problem found in one file (validation never stops at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The file could not be read at all.
    pub fn io(path: &Path, err: &std::io::Error) -> Self {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            key: "file".into(),
            message: err.to_string(),
        }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
