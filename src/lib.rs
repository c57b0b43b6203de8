//! Fulcrum: a load balancer and reverse proxy.
//!
//! See `README.md` for the operator's view and `DESIGN.md` for the architecture.

pub mod backend;
pub mod balance;
pub mod config;
pub mod route;
