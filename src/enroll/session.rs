//! The admin's session for registrations: static secrets as given, or an admin login made when
//! a registration is about to be sent (after the PKCS#7 is built and verified), kept while the
//! process runs and not idle past the server's `sessionTimeout`, made again after a 10001, and
//! ended by `logout`.
//!
//! Owns: when to log in, what is kept of a session, and logging out. Does not own: the login
//! calls (see `api::login`), the admin's own pair (see `admin_key`) or how the person is asked
//! (the face passes an `AskAdmin`).

use super::admin_key::{AdminKey, AskAdmin};
use super::{EnrollError, Registrar, Step};
use crate::api::login::LoggedIn;
use crate::api::{Answer, ApiError, CentagateClient, RegisterBody};
use crate::config::LoginOptions;
use crate::secret::AdminSecrets;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Held {
    session: LoggedIn,
    last_used: Instant,
}

/// A server session for one admin, obtained as the options say.
pub struct Session {
    client: Arc<CentagateClient>,
    login: LoginOptions,
    admin: String,
    ask: Arc<dyn AskAdmin>,
    held: tokio::sync::Mutex<Option<Held>>,
    /// For `login = token`: the admin's pair, logged in for the life of the session's owner.
    admin_key: Option<Arc<std::sync::Mutex<AdminKey>>>,
}

/// Without a `sessionTimeout` in the answer: the vendor's default, 30 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl Session {
    pub fn new(
        client: Arc<CentagateClient>,
        login: LoginOptions,
        admin: String,
        ask: Arc<dyn AskAdmin>,
    ) -> Self {
        let admin_key = match &login {
            LoginOptions::Token { key, .. } => {
                Some(Arc::new(std::sync::Mutex::new(AdminKey::new(key.clone()))))
            }
            _ => None,
        };
        Self {
            client,
            login,
            admin,
            ask,
            held: tokio::sync::Mutex::new(None),
            admin_key,
        }
    }

    /// Runs `f` (a dialog, the admin's token) off the runtime's thread, so the agent's other
    /// tokens and its tray go on meanwhile.
    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, EnrollError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| EnrollError::Usage(format!("the login's worker ended: {e}")))
    }

    /// Now in Unix seconds by the server's clock (its `Date`, when it differs by over a minute).
    async fn server_seconds(&self) -> i64 {
        let offset = match self.client.clock_offset_ms().await {
            Some(o) if o.abs() > super::CLOCK_SKEW_LIMIT_MS => o,
            _ => 0,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        i64::try_from(now)
            .unwrap_or(i64::MAX)
            .saturating_add(offset / 1000)
    }

    /// What the server said of the session this process opened: role, group, idle timeout.
    pub async fn described(&self) -> Option<(Option<i64>, Option<String>, Option<u64>)> {
        self.held.lock().await.as_ref().map(|h| {
            (
                h.session.role,
                h.session.group.clone(),
                h.session.session_timeout_ms,
            )
        })
    }

    /// Ends the session this process opened, if any (a one-shot command's last step, the
    /// agent's at exit). A refusal is only logged: the session then ends by its timeout.
    pub async fn logout(&self) {
        let Some(held) = self.held.lock().await.take() else {
            return;
        };
        let app = match &self.login {
            LoginOptions::Static(_) => return,
            LoginOptions::Password { app, .. } | LoginOptions::Token { app, .. } => app,
        };
        let ts = self.server_seconds().await;
        match self
            .client
            .logout(app, &self.admin, &held.session.secrets.auth_token, ts)
            .await
        {
            Ok(()) => tracing::info!(admin = %self.admin, "logged out"),
            Err(e) => {
                tracing::warn!(admin = %self.admin, error = %e, "the logout was not accepted")
            }
        }
    }
}

impl Registrar for Session {
    async fn secrets(
        &self,
        on: &mut (dyn FnMut(Step) + Send),
    ) -> Result<AdminSecrets, EnrollError> {
        // Static secrets are never held: the session below is only ever a login's.
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_mut() {
            let timeout = h
                .session
                .session_timeout_ms
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
            if h.last_used.elapsed() < timeout {
                h.last_used = Instant::now();
                return Ok(h.session.secrets.clone());
            }
            tracing::info!(admin = %self.admin, "the admin session has passed its idle timeout: logging in again");
            *held = None;
        }
        let session = match &self.login {
            LoginOptions::Static(s) => return Ok(s.clone()),
            LoginOptions::Password { api, app, password } => {
                // A password from a file or variable is used as often as needed; one that is
                // typed is asked for each login and dropped after it.
                let password = match password {
                    Some(p) => p.clone(),
                    None => {
                        let (ask, admin) = (self.ask.clone(), self.admin.clone());
                        Self::blocking(move || ask.password(&admin))
                            .await?
                            .map_err(ApiError::Config)?
                            .ok_or_else(|| {
                                ApiError::Config("no password was given for the admin login".into())
                            })?
                    }
                };
                let ts = self.server_seconds().await;
                self.client
                    .login_password(*api, app, &self.admin, &password, ts)
                    .await?
            }
            LoginOptions::Token { api, app, .. } => {
                // The server's random string, signed by the admin's own pair (kept logged in).
                let ts = self.server_seconds().await;
                let random = self
                    .client
                    .random_string(*api, app, &self.admin, ts)
                    .await?;
                let key = self.admin_key.clone().expect("made for a token login");
                let (ask, admin) = (self.ask.clone(), self.admin.clone());
                let content = random.as_bytes().to_vec();
                let pkcs7 = Self::blocking(move || {
                    key.lock().unwrap_or_else(|p| p.into_inner()).sign(
                        &admin,
                        &content,
                        ask.as_ref(),
                    )
                })
                .await?
                .map_err(EnrollError::AdminToken)?;
                let ts = self.server_seconds().await;
                self.client
                    .login_pkcs7(
                        *api,
                        app,
                        &self.admin,
                        &pkcs7,
                        crate::digest::DigestAlg::Sha256
                            .centagate_code()
                            .to_string()
                            .as_str(),
                        random.as_bytes(),
                        ts,
                    )
                    .await?
            }
        };
        on(Step::LoggedIn {
            admin: self.admin.clone(),
            timeout_ms: session.session_timeout_ms,
        });
        let secrets = session.secrets.clone();
        *held = Some(Held {
            session,
            last_used: Instant::now(),
        });
        Ok(secrets)
    }

    async fn session_refused(&self, refused: &AdminSecrets) -> bool {
        let app = match &self.login {
            LoginOptions::Static(_) => return false,
            LoginOptions::Password { app, .. } | LoginOptions::Token { app, .. } => app,
        };
        // Only the refused session goes (another worker may already hold a fresh one), and it
        // is logged out first: a 10001 can also be a real refusal of a live session.
        let mut held = self.held.lock().await;
        if held
            .as_ref()
            .is_some_and(|h| h.session.secrets.auth_token == refused.auth_token)
        {
            if let Some(h) = held.take() {
                let ts = self.server_seconds().await;
                if let Err(e) = self
                    .client
                    .logout(app, &self.admin, &h.session.secrets.auth_token, ts)
                    .await
                {
                    tracing::debug!(error = %e, "the refused session's logout");
                }
            }
        }
        true
    }

    async fn register(&self, admin: &str, body: &RegisterBody) -> Result<Answer, ApiError> {
        self.client.register(admin, body).await
    }

    async fn unbind(
        &self,
        admin: &str,
        user: &str,
        secrets: &AdminSecrets,
    ) -> Result<Answer, ApiError> {
        self.client.unbind(admin, user, secrets).await
    }

    async fn bound(
        &self,
        admin: &str,
        user: &str,
        secrets: &AdminSecrets,
    ) -> Result<Vec<crate::api::login::BoundCert>, ApiError> {
        self.client.bound_certificates(admin, user, secrets).await
    }

    async fn clock_offset_ms(&self) -> Option<i64> {
        self.client.clock_offset_ms().await
    }
}
