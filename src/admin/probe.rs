//! `GET /live` and `GET /ready`: the orchestrator's probes (Kubernetes, a load balancer in
//! front of several Fulcrums, the new process of a binary upgrade).
//!
//! Why without the token: a probe (kubelet, an L4 balancer's check) cannot carry a bearer
//! token, and the answers say nothing an open port does not: a status code and one word.
//! Like the static page, they are answered before the token is checked.
//!
//! - `/live`: 200 while the process runs (its admin server answering is the proof).
//! - `/ready`: 200 once listening and the first round of active checks is done; 503 while
//!   starting, and from the moment a shutdown or binary upgrade begins while in-flight work
//!   finishes (back to 200 if the upgrade fails and this process keeps serving).

use http::StatusCode;

use super::{reply, Reply};
use crate::snapshot::{Live, Phase};

/// The reply to `GET path` when it is a probe.
pub fn answer(path: &str, shared: &Live) -> Option<Reply> {
    match path {
        "/live" => Some(reply(StatusCode::OK, "text/plain", "live\n")),
        "/ready" => {
            let (status, word) = match *shared.phase.borrow() {
                Phase::Serving => (StatusCode::OK, "ready\n"),
                Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                Phase::Draining | Phase::HandedOver => {
                    (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                }
            };
            Some(reply(status, "text/plain", word))
        }
        _ => None,
    }
}
