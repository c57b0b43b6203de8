//! Fulcrum integration tests: the real proxy (library entry point or the `fulcrum` binary),
//! real backends and clients on loopback. One binary, one module per feature.
//!
//! Run with limited parallelism: `cargo test --test it -- --test-threads=2`.

#![allow(clippy::unwrap_used)]
// Test backends record requests behind a Mutex: test code, not the request path.
#![allow(clippy::disallowed_types)]

mod support;

mod admin;
mod balance;
mod cli;
mod errors;
mod failover;
mod hash;
mod headers;
mod health;
mod layers;
mod lifecycle;
mod malformed;
mod postgres;
mod protocols;
mod redis;
mod region;
mod reload;
mod routing;
mod tcp;
