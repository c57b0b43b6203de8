//! Raw serde mirror of the TOML file, with spans.
