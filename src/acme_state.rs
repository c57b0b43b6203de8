//! What the ACME tasks share with the rest of the process: the HTTP-01 tokens of the orders in
//! progress with their answers ([`Challenges`]), and each listener's certificate status
//! ([`Board`], shown by the admin API).
//!
//! The ACME task (`acme`, on the control runtime) publishes a token's key authorization here
//! before it tells the CA the challenge is ready, and withdraws it when the order is done; the
//! http listeners answer `GET /.well-known/acme-challenge/TOKEN` from it (`http::proxy`). It is a
//! leaf so that both can reach it: the writer sits far above the request path, the reader in it.
//!
//! The request path loads the map only for a request whose path starts with
//! [`WELL_KNOWN_PREFIX`]: every other request pays a prefix comparison and nothing else.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

/// Where the CA asks for a token (RFC 8555 section 8.3).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/acme-challenge/";

/// Tokens of the orders in progress -> their key authorizations.
#[derive(Debug, Default)]
pub struct Challenges {
    tokens: ArcSwap<HashMap<Box<str>, Arc<str>>>,
}

impl Challenges {
    /// Publishes `token`'s answer (cold path: a copy of a map of a few entries).
    pub fn insert(&self, token: &str, key_authorization: &str) {
        let answer: Arc<str> = Arc::from(key_authorization);
        self.tokens.rcu(|tokens| {
            let mut next = HashMap::clone(tokens);
            next.insert(Box::from(token), Arc::clone(&answer));
            next
        });
    }

    /// Withdraws `token` (answered or abandoned).
    pub fn remove(&self, token: &str) {
        self.tokens.rcu(|tokens| {
            let mut next = HashMap::clone(tokens);
            next.remove(token);
            next
        });
    }

    /// The answer for a request path, when it asks for a published token.
    pub fn answer(&self, path: &str) -> Option<Arc<str>> {
        let token = path.strip_prefix(WELL_KNOWN_PREFIX)?;
        self.tokens.load().get(token).cloned()
    }
}

/// What the ACME tasks share with the serving side and the admin API.
#[derive(Debug, Default)]
pub struct AcmeState {
    pub challenges: Challenges,
    pub board: Board,
}

/// What the admin status shows for one listener's ACME certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeStatus {
    pub domains: Vec<String>,
    /// "ordering", "valid" or "error".
    pub state: &'static str,
    /// The certificate's expiry, when one is held.
    pub not_after: Option<SystemTime>,
    /// When the next order runs (renewal, or the retry after an error).
    pub next: Option<SystemTime>,
    /// The last failure, kept until an order succeeds.
    pub last_error: Option<String>,
}

/// Every ACME listener's status, by listener name (written by the tasks, read by the admin).
#[derive(Debug, Default)]
pub struct Board {
    entries: ArcSwap<BTreeMap<String, AcmeStatus>>,
}

impl Board {
    /// A copy of every listener's status.
    pub fn snapshot(&self) -> BTreeMap<String, AcmeStatus> {
        BTreeMap::clone(&self.entries.load())
    }

    pub fn set(&self, listener: &str, status: AcmeStatus) {
        self.entries.rcu(|m| {
            let mut next = BTreeMap::clone(m);
            next.insert(listener.to_string(), status.clone());
            next
        });
    }

    /// Changes `listener`'s entry, if it has one.
    pub fn update(&self, listener: &str, f: impl Fn(&mut AcmeStatus)) {
        self.entries.rcu(|m| {
            let mut next = BTreeMap::clone(m);
            if let Some(s) = next.get_mut(listener) {
                f(s);
            }
            next
        });
    }

    /// Drops the entries of listeners no longer using ACME.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.entries.rcu(|m| {
            let mut next = BTreeMap::clone(m);
            next.retain(|k, _| keep(k));
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_token_is_answered_until_withdrawn() {
        let c = Challenges::default();
        assert!(c.answer("/.well-known/acme-challenge/abc").is_none());
        c.insert("abc", "abc.thumb");
        assert_eq!(
            c.answer("/.well-known/acme-challenge/abc").as_deref(),
            Some("abc.thumb")
        );
        assert!(c.answer("/.well-known/acme-challenge/abd").is_none());
        assert!(c.answer("/abc").is_none());
        c.remove("abc");
        assert!(c.answer("/.well-known/acme-challenge/abc").is_none());
    }
}
