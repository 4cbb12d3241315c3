//! Where the agent's enrollments go: a CENTAGATE server under the admin's session kept on this
//! desk, or the organisation's relay, which holds that session itself (no admin secret on the
//! desk). Chosen once, at start, from the configuration.
//!
//! Owns: the choice and what each side keeps for the agent's life (the client, the session,
//! the relay client), and ending it at exit. Does not own: the enrollment's order (see
//! `enroll`) or what a worker does with it (see `work`).

use crate::api::relay::RelayClient;
use crate::api::CentagateClient;
use crate::config::{LoginOptions, RegisterOptions, RelayOptions};
use crate::enroll::{MustMatch, Session, UserFrom};
use std::path::Path;
use std::sync::Arc;

/// The configured destination.
pub enum Destination {
    /// A CENTAGATE server, with the admin's session on this desk.
    Server(RegisterOptions),
    /// The organisation's relay.
    Relay(RelayOptions),
}

impl Destination {
    pub fn user(&self) -> &UserFrom {
        match self {
            Destination::Server(r) => &r.user,
            Destination::Relay(r) => &r.user,
        }
    }

    pub fn user_must_match(&self) -> MustMatch {
        match self {
            Destination::Server(r) => r.user_must_match,
            Destination::Relay(r) => r.user_must_match,
        }
    }

    pub fn journal(&self) -> &Path {
        match self {
            Destination::Server(r) => &r.journal,
            Destination::Relay(r) => &r.journal,
        }
    }

    /// The admin's own pair (`login = token`): never offered for enrollment.
    pub fn admin_key(&self) -> Option<crate::token::Selector> {
        match self {
            Destination::Server(RegisterOptions {
                login: LoginOptions::Token { key, .. },
                ..
            }) => Some(crate::token::Selector {
                uri: Some(key.uri.clone()),
                ..Default::default()
            }),
            _ => None,
        }
    }

    /// What the PIN dialog says the signature is for.
    pub fn purpose(&self, user: &str) -> String {
        match self {
            Destination::Server(_) => format!("for {user} with CENTAGATE."),
            Destination::Relay(r) => format!(
                "for {user}: it signs an enrollment statement for {user} that the relay {} \
                 registers with CENTAGATE.",
                r.url
            ),
        }
    }
}

/// What the agent keeps of its destination while it runs.
pub enum Backend {
    Server {
        client: Arc<CentagateClient>,
        /// The admin's session, kept while the agent runs (logged out at exit).
        session: Box<Session>,
    },
    Relay(RelayClient),
}

impl Backend {
    /// `ask`: how the server side asks for the admin's password or token PIN.
    pub fn open(
        dest: &Destination,
        http: &crate::api::HttpOptions,
        ask: Arc<dyn crate::enroll::AskAdmin>,
    ) -> Result<Self, String> {
        Ok(match dest {
            Destination::Server(reg) => {
                let client = Arc::new(
                    CentagateClient::new(&reg.server, http.clone()).map_err(|e| e.to_string())?,
                );
                Backend::Server {
                    session: Box::new(Session::new(
                        client.clone(),
                        reg.login.clone(),
                        reg.admin.clone(),
                        ask,
                    )),
                    client,
                }
            }
            Destination::Relay(r) => {
                Backend::Relay(RelayClient::new(&r.url, &r.http).map_err(|e| e.to_string())?)
            }
        })
    }

    /// At exit: the server's session ends (the relay's is the relay's).
    pub async fn logout(&self) {
        if let Backend::Server { session, .. } = self {
            session.logout().await;
        }
    }
}
