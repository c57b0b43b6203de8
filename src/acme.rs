//! ACME (RFC 8555) certificates for TLS listeners: order, HTTP-01, store, renew.
//!
//! One task per TLS listener with `acme`, on the control runtime, never on the request path.
//! It keeps an account per directory under `state_dir/acme/`, orders a certificate for the
//! listener's domains when it has none (or the one it has is due), answers the CA's HTTP-01
//! challenges through [`Challenges`] (which every http listener of this process serves), and
//! writes the certificate and its key next to the account. The listener's snapshot reads those
//! files like any `certs` entry (`config::AcmeConfig::cert_files`), so a new certificate is
//! applied by the one reload path: the task asks for a reload once it has written one, new
//! handshakes get it, open connections carry on.
//!
//! Renewal: at `not_after - min(30 days, lifetime / 3)`: 30 days before expiry for the usual
//! 90-day certificates, proportionally sooner for short-lived ones (a test CA's). A failed
//! order is logged, shown by the admin status ([`Board`]) and retried with exponential
//! backoff; the listener serves its other certificates (or the previous one) meanwhile.
//!
//! The ACME client is `instant-acme` (with its rustls HTTP client); this file only sequences
//! its calls and owns the files.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use tokio::runtime::Handle;

use crate::acme_state::{AcmeState, AcmeStatus};
use crate::chain::Chain;
use crate::config::{AcmeConfig, Config};
use crate::reload::Reloader;

/// The first retry after a failed order; doubled after each failure up to [`MAX_BACKOFF`].
/// Let's Encrypt allows 5 failed validations per hostname per hour: this stays under it.
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(3 * 3600);
/// The most one order (account, challenges, finalize, download) may take.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the CA may take to validate the challenges, and to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

/// Why an order failed (logged and shown by the admin status; the task retries).
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("ACME order for {domains} ended {status}")]
    Order { domains: String, status: String },
    #[error("ACME: the CA offered no http-01 challenge for {0}")]
    NoHttp01(String),
    #[error("ACME: cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ACME: cannot read the account {}: {source}", path.display())]
    Account {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("ACME: the order took longer than {0:?}")]
    Timeout(Duration),
}

/// What a task needs besides its listener's settings.
#[derive(Clone)]
pub struct Context {
    pub state_dir: PathBuf,
    pub shared: Arc<AcmeState>,
    /// Puts newly written certificate files in service (`Reloader::refresh_files`).
    pub reloader: Weak<Reloader>,
}

/// The listeners of `config` that want ACME, with their settings.
pub fn wanted(config: &Config) -> Vec<(String, AcmeConfig)> {
    config
        .listeners
        .iter()
        .filter_map(|l| {
            let acme = l.tls.as_ref()?.acme.as_ref()?;
            Some((l.name.clone(), acme.clone()))
        })
        .collect()
}

/// Starts the ACME tasks of `config` on `control` and keeps them in step with every config
/// the reloader applies from now on.
/// `now`: `[global] state_dir` and [`wanted`] of the config the process starts with.
pub fn start(
    reloader: &Arc<Reloader>,
    shared: Arc<AcmeState>,
    now: (PathBuf, &[(String, AcmeConfig)]),
    control: &Handle,
) {
    let (state_dir, wanted_now) = now;
    let ctx = Context {
        state_dir,
        shared,
        reloader: Arc::downgrade(reloader),
    };
    let mut tasks = AcmeTasks::default();
    tasks.sync(wanted_now, &ctx, control);
    // Cold path (once per reload), never the request path.
    #[allow(clippy::disallowed_types)]
    let tasks = std::sync::Mutex::new(tasks);
    let control = control.clone();
    reloader.on_applied(Box::new(move |config| {
        let mut tasks = tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.sync(&wanted(config), &ctx, &control);
    }));
}

/// One listener's ACME settings, as the task compares them across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    listener: String,
    acme: AcmeConfig,
}

/// The running ACME tasks, kept in step with the config by [`AcmeTasks::sync`].
#[derive(Default)]
pub struct AcmeTasks {
    tasks: HashMap<Key, tokio::task::AbortHandle>,
}

impl AcmeTasks {
    /// Starts a task for each `(listener, acme)` not running yet and stops those no longer
    /// wanted (their certificate files stay, for a later config that wants them again).
    pub fn sync(
        &mut self,
        wanted: &[(String, AcmeConfig)],
        ctx: &Context,
        control: &tokio::runtime::Handle,
    ) {
        let wanted: Vec<Key> = wanted
            .iter()
            .map(|(listener, acme)| Key {
                listener: listener.clone(),
                acme: acme.clone(),
            })
            .collect();
        self.tasks.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        ctx.shared
            .board
            .retain(|name| wanted.iter().any(|k| k.listener == name));
        for key in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.tasks.entry(key) {
                let key = slot.key();
                let task = control.spawn(maintain(
                    key.listener.clone(),
                    key.acme.clone(),
                    ctx.clone(),
                ));
                slot.insert(task.abort_handle());
            }
        }
    }
}

impl Drop for AcmeTasks {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let ahead = (lifetime / 3).min(Duration::from_secs(30 * 86_400));
    not_after.checked_sub(ahead).unwrap_or(not_after)
}

/// The validity of the first certificate in the PEM file at `path`, if it can be read.
pub fn certificate_validity(path: &Path) -> Option<(SystemTime, SystemTime)> {
    use rustls_pki_types::pem::PemObject;
    let bytes = crate::config::files::read_bounded(path, 1024 * 1024).ok()?;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };
    Some((
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    ))
}

/// Keeps one listener's certificate issued and fresh, for as long as the task runs.
async fn maintain(listener: String, acme: AcmeConfig, ctx: Context) {
    let (cert_path, key_path) = acme.cert_files(&ctx.state_dir, &listener);
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = None;
    loop {
        let held = certificate_validity(&cert_path);
        let due = match held {
            Some((from, until)) => renew_at(from, until),
            None => SystemTime::now(),
        };
        ctx.shared.board.set(
            &listener,
            AcmeStatus {
                domains: acme.domains.clone(),
                state: if held.is_some() { "valid" } else { "ordering" },
                not_after: held.map(|(_, until)| until),
                next: Some(due),
                last_error: last_error.clone(),
            },
        );
        if let Ok(wait) = due.duration_since(SystemTime::now()) {
            tracing::info!(listener, domains = ?acme.domains, in_s = wait.as_secs(), "ACME: certificate held; renewal scheduled");
            tokio::time::sleep(wait).await;
        }
        ctx.shared.board.update(&listener, |s| s.state = "ordering");
        tracing::info!(listener, domains = ?acme.domains, directory = %acme.directory, "ACME: ordering a certificate");
        let attempt =
            tokio::time::timeout(ORDER_TIMEOUT, order(&acme, &ctx, &cert_path, &key_path))
                .await
                .unwrap_or(Err(AcmeError::Timeout(ORDER_TIMEOUT)));
        match attempt {
            Ok(()) => {
                tracing::info!(listener, domains = ?acme.domains, cert = %cert_path.display(), "ACME: certificate issued");
                backoff = FIRST_BACKOFF;
                last_error = None;
                let reloader = ctx.reloader.clone();
                // The rebuild reads files: a blocking thread, not the reactor.
                let applied = tokio::task::spawn_blocking(move || {
                    reloader.upgrade().map(|r| r.refresh_files())
                })
                .await;
                if let Ok(Some(Err(e))) = applied {
                    tracing::warn!(
                        listener,
                        "ACME: the new certificate waits for the next reload: {}",
                        Chain(&e)
                    );
                }
            }
            Err(e) => {
                let message = Chain(&e).to_string();
                tracing::error!(listener, domains = ?acme.domains, retry_in_s = backoff.as_secs(), "{message}");
                last_error = Some(message.clone());
                let retry = SystemTime::now() + backoff;
                ctx.shared.board.update(&listener, |s| {
                    s.state = "error";
                    s.last_error = Some(message.clone());
                    s.next = Some(retry);
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One order, start to finish: the certificate and key files are written only if it succeeds.
async fn order(
    acme: &AcmeConfig,
    ctx: &Context,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), AcmeError> {
    let account = account(acme, &ctx.state_dir).await?;
    let identifiers: Vec<Identifier> = acme
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut published = Vec::new();
    let outcome = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let name = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or(AcmeError::NoHttp01(name))?;
            ctx.shared
                .challenges
                .insert(&challenge.token, challenge.key_authorization().as_str());
            published.push(challenge.token.clone());
            challenge.set_ready().await?;
        }
        let status = order.poll_ready(&POLL).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Order {
                domains: acme.domains.join(","),
                status: format!("{status:?}"),
            });
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&POLL).await?;
        Ok((key_pem, chain_pem))
    }
    .await;
    for token in &published {
        ctx.shared.challenges.remove(token);
    }
    let (key_pem, chain_pem) = outcome?;
    // The key first: a reload between the two writes sees the old pair or a mismatch it
    // rejects (keeping the old snapshot), never a new cert with no key.
    write_private(key_path, key_pem.as_bytes())?;
    write_private(cert_path, chain_pem.as_bytes())?;
    Ok(())
}

/// The account for `acme.directory`: read from `state_dir`, or created and stored there.
async fn account(acme: &AcmeConfig, state_dir: &Path) -> Result<Account, AcmeError> {
    let path = acme.account_file(state_dir);
    let builder = || match &acme.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    if let Ok(bytes) = crate::config::files::read_bounded(&path, 64 * 1024) {
        let credentials: AccountCredentials =
            serde_json::from_slice(&bytes).map_err(|e| AcmeError::Account {
                path: path.clone(),
                source: Box::new(e),
            })?;
        return Ok(builder()?.from_credentials(credentials).await?);
    }
    let contact = format!("mailto:{}", acme.email);
    let contacts: Vec<&str> = if acme.email.is_empty() {
        Vec::new()
    } else {
        vec![contact.as_str()]
    };
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            None,
        )
        .await?;
    let json = serde_json::to_vec_pretty(&credentials).map_err(|e| AcmeError::Account {
        path: path.clone(),
        source: Box::new(e),
    })?;
    write_private(&path, &json)?;
    tracing::info!(directory = %acme.directory, account = %path.display(), "ACME: account created");
    Ok(account)
}

/// Writes `bytes` to `path` readable by the owner only, atomically (a temporary file renamed
/// over it), creating the folder.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| AcmeError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn a_90_day_certificate_is_renewed_30_days_before_expiry() {
        let from = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 * DAY);
        let until = from + Duration::from_secs(90 * DAY);
        assert_eq!(renew_at(from, until), until - Duration::from_secs(30 * DAY));
    }

    #[test]
    fn a_year_certificate_is_renewed_30_days_before_expiry() {
        let from = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 * DAY);
        let until = from + Duration::from_secs(365 * DAY);
        assert_eq!(renew_at(from, until), until - Duration::from_secs(30 * DAY));
    }

    #[test]
    fn a_short_lived_certificate_is_renewed_after_two_thirds_of_its_life() {
        let from = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 * DAY);
        let until = from + Duration::from_secs(60);
        assert_eq!(renew_at(from, until), from + Duration::from_secs(40));
    }

    #[test]
    fn private_files_are_written_whole_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("acme/x.key");
        write_private(&path, b"one").expect("write");
        write_private(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
