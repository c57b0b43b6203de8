//! Fulcrum integration tests: the real proxy (library entry point or the `fulcrum` binary),
//! real backends and clients on loopback. One binary, one module per feature.
//!
//! `cargo test` runs them. A test that needs a program or data file the machine lacks
//! (redis-server, PostgreSQL, promtool, Chromium, the country database) skips with one
//! `skipped:` line on stderr (`support::require`); with `FULCRUM_TEST_REQUIRE_ALL=1`, as
//! `.ci/run` sets it, it fails instead.

#![allow(clippy::unwrap_used)]
// Test backends record requests behind a Mutex: test code, not the request path.
#![allow(clippy::disallowed_types)]

mod support;

mod acme;
mod admin;
mod admin_safety;
mod backend_tls;
mod balance;
mod cli;
mod dashboard;
mod discovery;
mod errors;
mod grpc;
mod gslb;
mod h2_abuse;
mod h2_upstream;
mod hash;
mod headers;
mod health;
mod http1_corpus;
mod http1_engine;
mod layers;
mod lifecycle;
mod limits;
mod malformed;
mod packaging;
mod parked;
mod postgres;
mod protocols;
mod redis;
mod region;
mod reload;
mod request_id;
mod routing;
mod smuggling;
mod tcp;
mod tcp_sni;
mod timeouts;
mod tls;
mod tls_reload;
mod upgrade;
mod upstream;
