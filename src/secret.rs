//! Secret values: the token PIN, the admin's authToken and secretCode, and the derived cenToken.
//!
//! Owns: types that never print their contents (`Debug`/`Display` are redacted) and are zeroized
//! on drop, and taking secret variables out of the process environment (`EnvSecrets`,
//! `take_env`). Does not own: which source a secret is read from (see `config` and `ui::pin`) or
//! what it is used for.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

macro_rules! secret_type {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: String) -> Self {
                Self(value)
            }
            /// The secret itself; call sites are few and reviewed.
            pub fn expose(&self) -> &str {
                &self.0
            }
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($what, "(<redacted>)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
    };
}

secret_type!(
    /// A token user PIN.
    Pin, "Pin");
secret_type!(
    /// The CENTAGATE admin's authToken from an earlier admin authentication.
    AuthToken, "AuthToken");
secret_type!(
    /// The CENTAGATE admin's secretCode, the HMAC key of the cenToken.
    SecretCode, "SecretCode");
secret_type!(
    /// Lowercase hex HMAC-SHA256(secretCode, admin + authToken): it authenticates the admin.
    CenToken, "CenToken");
secret_type!(
    /// The App's secretKey, the HMAC key of every login-side call.
    AppSecret, "AppSecret");
secret_type!(
    /// The admin's password for a password login.
    AdminPassword, "AdminPassword");
secret_type!(
    /// A proxy's password, or a proxy URL that may carry one.
    ProxyPassword, "ProxyPassword");

impl serde::Serialize for CenToken {
    /// Only into a request body: the one place the cenToken is meant to go.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Bytes that are zeroized when dropped, for a serialised request that holds a secret. Handed to
/// the HTTP stack as the owner of the body, so our copy is wiped when the request is done with it
/// (the TLS layer's transient copies are outside our reach).
pub struct ZeroizingBytes(pub Vec<u8>);

impl AsRef<[u8]> for ZeroizingBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl ZeroizingBytes {
    /// Overwrites the whole allocation (length and spare capacity) with zeros.
    fn wipe(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for ZeroizingBytes {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl Pin {
    /// Strips one trailing newline (and a CR before it) as read from stdin or a file.
    pub fn from_line(mut line: String) -> Self {
        if line.ends_with('\n') {
            line.pop();
            if line.ends_with('\r') {
                line.pop();
            }
        }
        Self(line)
    }
}

/// A secret for one use: its clones share it, and the first `take` leaves it to none of them
/// (the admin token's PIN from a variable opens a login that is then kept, so the PIN is not).
#[derive(Clone)]
pub struct OneUse<T>(std::sync::Arc<std::sync::Mutex<Option<T>>>);

impl<T> OneUse<T> {
    pub fn new(value: T) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(Some(value))))
    }

    /// The secret, the first time; `None` ever after (for every clone).
    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl<T> fmt::Debug for OneUse<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneUse(<redacted>)")
    }
}

/// Takes a variable out of the process environment: returns its value (if set, non-empty and
/// UTF-8) and removes it, so no child process inherits it.
///
/// Call only while the process has one thread — at start, and while the configuration is
/// resolved, before any runtime, watcher or dialog thread exists (`std::env::remove_var` is not
/// safe to race with other threads reading the environment).
pub fn take_env(name: &str) -> Option<String> {
    let value = std::env::var_os(name)?;
    std::env::remove_var(name);
    value.into_string().ok().filter(|v| !v.is_empty())
}

/// The variables that hold a secret under a fixed name: the static session's authToken and
/// secretCode, and the admin login's App secret and password.
pub const SECRET_VARIABLES: [&str; 4] = [
    "TOKENROLL_AUTH_TOKEN",
    "TOKENROLL_SECRET_CODE",
    "TOKENROLL_APP_SECRET",
    "TOKENROLL_ADMIN_PASSWORD",
];

impl Pin {
    /// The PIN's SHA-256 under `salt`: what is kept of a PIN a token refused (never the PIN),
    /// so that it is not sent to that token again.
    pub fn salted_hash(&self, salt: &[u8; 32]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(salt);
        h.update(self.expose().as_bytes());
        h.finalize().into()
    }
}

/// The secrets the environment held at start, taken out of it before any thread or child exists.
#[derive(Debug, Default)]
pub struct EnvSecrets {
    pub auth_token: Option<AuthToken>,
    pub secret_code: Option<SecretCode>,
    pub app_secret: Option<AppSecret>,
    pub admin_password: Option<AdminPassword>,
    /// The proxy the environment names for HTTPS (`HTTPS_PROXY`, `ALL_PROXY`, either case),
    /// with `NO_PROXY`. A proxy URL that carries credentials is taken out of the environment.
    pub proxy: Option<ProxyPassword>,
    pub no_proxy: Option<String>,
}

impl EnvSecrets {
    /// Takes every [`SECRET_VARIABLES`] entry out of the environment. The first thing `main` does.
    pub fn take() -> Self {
        let [auth, code, app, password] = SECRET_VARIABLES.map(take_env);
        let proxy = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
            .into_iter()
            .find_map(|name| {
                let mut v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
                // "host:port" and "user:pass@host:port" mean http://, as curl reads them.
                if !v.contains("://") {
                    v = format!("http://{v}");
                }
                // Credentials in it make it a secret: no child inherits it.
                if url::Url::parse(&v)
                    .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
                {
                    for n in [
                        "HTTPS_PROXY",
                        "https_proxy",
                        "ALL_PROXY",
                        "all_proxy",
                        "HTTP_PROXY",
                        "http_proxy",
                    ] {
                        take_env(n);
                    }
                }
                Some(ProxyPassword::new(v))
            });
        let no_proxy = ["NO_PROXY", "no_proxy"]
            .into_iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
        Self {
            proxy,
            no_proxy,
            auth_token: auth.map(AuthToken::new),
            secret_code: code.map(SecretCode::new),
            app_secret: app.map(AppSecret::new),
            admin_password: password.map(AdminPassword::new),
        }
    }
}

/// The admin credentials, always travelling together.
#[derive(Clone, Debug)]
pub struct AdminSecrets {
    pub auth_token: AuthToken,
    pub secret_code: SecretCode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_use_secret_is_gone_for_every_clone_after_the_first_take() {
        let once = OneUse::new(Pin::new("123456".into()));
        let clone = once.clone();
        assert_eq!(format!("{once:?}"), "OneUse(<redacted>)");
        assert_eq!(
            clone.take().map(|p| p.expose().to_string()).as_deref(),
            Some("123456")
        );
        assert!(once.take().is_none() && clone.take().is_none());
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let p = Pin::new("123456".into());
        assert_eq!(format!("{p:?}"), "Pin(<redacted>)");
        assert_eq!(format!("{p}"), "<redacted>");
        let s = AdminSecrets {
            auth_token: AuthToken::new("AT-123".into()),
            secret_code: SecretCode::new("S3cr3t".into()),
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("AT-123") && !dbg.contains("S3cr3t"), "{dbg}");
    }

    #[test]
    fn a_serialised_body_is_wiped() {
        let mut b = ZeroizingBytes(b"{\"cenToken\":\"6f1433\"}".to_vec());
        b.wipe();
        let cap = b.0.capacity();
        // SAFETY: the Vec still owns its allocation; `zeroize` wrote every byte of its capacity.
        let all = unsafe { std::slice::from_raw_parts(b.0.as_ptr(), cap) };
        assert!(cap > 0 && all.iter().all(|&x| x == 0));
    }

    #[test]
    fn pin_from_line_strips_one_newline() {
        assert_eq!(Pin::from_line("1234\r\n".into()).expose(), "1234");
        assert_eq!(Pin::from_line("1234\n\n".into()).expose(), "1234\n");
        assert_eq!(Pin::from_line("1234".into()).expose(), "1234");
    }
}
