//! An error with its causes, each printed once: `connect failed: Connection refused (os error 111)`.
//!
//! Why: every error enum of the crate says only its own part in `Display` and names its cause
//! as `#[source]`, so a chain printer (this one, or anyhow's `{:#}` in `main.rs`) shows the
//! whole story without a cause printed twice. Logs, the status page and the admin API print
//! errors through [`Chain`].

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources, separated by `": "`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_once() {
        let e = Outer(std::io::Error::other("refused"));
        assert_eq!(Chain(&e).to_string(), "connect failed: refused");
    }
}
