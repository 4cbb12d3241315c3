//! The folders tokenroll reads and writes — the user's config file, the state folder (journal,
//! registry, agent log), the runtime folder (the agent's lock) — resolved once at start from the
//! environment and handed down; and the one safe way to open each kind of file in them.
//!
//! Owns: XDG resolution, folder ownership and mode checks, `O_NOFOLLOW` opens, atomic
//! replacement, and secret files checked on their open descriptor. Does not own: what the files
//! hold (see `journal`, `agent::registry`, `config`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("neither XDG_STATE_HOME nor HOME is set, so tokenroll has no folder for its state (journal, registry, log) and will not write under the current directory; set HOME, or XDG_STATE_HOME")]
    NoStateHome,
    #[error("{dir} belongs to another user (uid {owner}); tokenroll reads its configuration and keeps its state only where no one else can change them: run 'chown {user} {dir}' if it is yours, or use a folder of yours")]
    ForeignOwner {
        dir: String,
        owner: u32,
        user: String,
    },
    #[error("{dir} can be written by group or others (mode {mode:o}), so another user could change what tokenroll reads or keeps there: run 'chmod go-w {dir}'")]
    Writable { dir: String, mode: u32 },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PathError + '_ {
    move |e| PathError::Io {
        path: path.display().to_string(),
        reason: match e.raw_os_error() {
            Some(libc::ELOOP) => {
                "is a symbolic link; tokenroll does not follow links for the files it keeps \
                 (remove the link)"
                    .into()
            }
            _ => e.to_string(),
        },
    }
}

/// The folders, as the environment named them at start.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `$XDG_CONFIG_HOME/tokenroll/config.toml` (or `~/.config/...`); `None` without either.
    pub user_config: Option<PathBuf>,
    /// `$XDG_STATE_HOME/tokenroll` (or `~/.local/state/tokenroll`); `None` without either.
    state: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`, if set.
    pub runtime: Option<PathBuf>,
    /// `$STATE_DIRECTORY` (the first, if several): a service's state folder under systemd
    /// (`StateDirectory=`), where the relay keeps its SQLite database by default.
    pub service_state: Option<PathBuf>,
    /// `$TOKENROLL_POLICY_FILE`: an additional policy file, which only adds constraints to
    /// `/etc/tokenroll/policy.toml` (see `config::policy`).
    pub extra_policy: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME` (or `~/.config`): where a user's autostart entries and units live.
    pub config_home: Option<PathBuf>,
    /// `$XDG_CONFIG_DIRS` (or `/etc/xdg`): the system's autostart entries.
    pub config_dirs: Vec<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY`: the secrets systemd handed a service (`LoadCredential=`).
    pub credentials: Option<PathBuf>,
}

impl Paths {
    /// Reads the environment once. Nothing is created or checked until a folder is used.
    pub fn from_env() -> Self {
        // The XDG base directory spec: a relative path in these variables is invalid and ignored.
        let var = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let home = var("HOME");
        let config_home =
            var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
        let config_dirs: Vec<PathBuf> = std::env::var("XDG_CONFIG_DIRS")
            .unwrap_or_default()
            .split(':')
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .collect();
        Self {
            user_config: config_home
                .as_ref()
                .map(|b| b.join("tokenroll/config.toml")),
            config_home,
            config_dirs: if config_dirs.is_empty() {
                vec![PathBuf::from("/etc/xdg")]
            } else {
                config_dirs
            },
            state: var("XDG_STATE_HOME")
                .or_else(|| home.as_ref().map(|h| h.join(".local/state")))
                .map(|b| b.join("tokenroll")),
            runtime: var("XDG_RUNTIME_DIR"),
            service_state: std::env::var_os("STATE_DIRECTORY")
                .and_then(|v| {
                    v.to_str()
                        .and_then(|s| s.split(':').next())
                        .map(PathBuf::from)
                })
                .filter(|p| p.is_absolute()),
            // Not filtered like the XDG folders: a relative one is refused where it is read.
            extra_policy: std::env::var_os("TOKENROLL_POLICY_FILE").map(PathBuf::from),
            credentials: var("CREDENTIALS_DIRECTORY"),
        }
    }

    /// The credential `name` systemd handed this service, when it did.
    pub fn credential(&self, name: &str) -> Option<PathBuf> {
        let p = self.credentials.as_ref()?.join(name);
        p.is_file().then_some(p)
    }

    /// The state folder; refused (never the current directory) when the environment names none.
    pub fn state_dir(&self) -> Result<&Path, PathError> {
        self.state.as_deref().ok_or(PathError::NoStateHome)
    }

    /// The agent's one-per-session lock: held while an agent runs.
    pub fn agent_lock(&self) -> Result<PathBuf, PathError> {
        Ok(self.lock_dir()?.join("tokenroll-agent.lock"))
    }

    /// Where the agent's one-per-session lock lives: the runtime folder, else the state folder.
    pub fn lock_dir(&self) -> Result<&Path, PathError> {
        match &self.runtime {
            Some(r) => Ok(r),
            None => self.state_dir(),
        }
    }
}

/// Creates `dir` (and missing parents) owner-only, then checks that the folder is fit to keep
/// state in: owned by this user or root, and not writable by group or others.
pub fn private_dir(dir: &Path) -> Result<(), PathError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    check_dir(dir)
}

/// Refuses a config file, or its folder, that another user owns or that group or others may
/// write: whoever can change it can point tokenroll at another server.
pub fn check_config(file: &Path) -> Result<(), PathError> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_dir(dir)?;
    }
    check_dir(file)
}

/// Refuses a folder (or file) that another user owns, or that group or others may write.
pub fn check_dir(dir: &Path) -> Result<(), PathError> {
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let shown = dir.display().to_string();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(PathError::ForeignOwner {
            dir: shown,
            owner: meta.uid(),
            user: std::env::var("USER").unwrap_or_else(|_| me.to_string()),
        });
    }
    // A sticky world-writable folder (/tmp) still lets others plant names; refused as well.
    if meta.mode() & 0o022 != 0 {
        return Err(PathError::Writable {
            dir: shown,
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Opens `path` for appending, creating it owner-only; a symbolic link in its place is refused.
pub fn open_append(path: &Path) -> Result<File, PathError> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io(path))
}

/// Opens (creating) a lock file owner-only; a symbolic link in its place is refused.
pub fn open_lock(path: &Path) -> Result<File, PathError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io(path))
}

/// Reads a file that may be absent (`Ok(None)`), never through a symbolic link.
pub fn read_nofollow(path: &Path) -> Result<Option<Vec<u8>>, PathError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let mut f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io(path))?;
    Ok(Some(bytes))
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a
/// mix: a temporary file in the same folder, written and synced, renamed over `path`, and the
/// folder synced so the rename itself is on disk.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // tempfile creates the file O_EXCL with mode 0600 and a random name.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tokenroll-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Where systemd puts a system service's credentials (`LoadCredential=`), one folder per unit.
/// Only root can make folders there; systemd lets no one but the service's user (and root) read
/// them, with the files owned by root and an ACL where the file system has them.
const SYSTEMD_CREDENTIALS: &str = "/run/credentials";

/// Reads a secret file: opened first (never through a link), then checked on the open
/// descriptor — owned by this user, readable by no one else — so the file checked is the file
/// read. A service's credential from systemd is guarded by its folder instead; it must still be
/// writable by no one but its owner. The text comes back zeroizing, one trailing newline removed.
pub fn read_secret_file(path: &Path, key: &str) -> Result<Zeroizing<String>, String> {
    read_secret_in(path, key, Path::new(SYSTEMD_CREDENTIALS))
}

/// `path` is `ROOT/UNIT/NAME`, with nothing that climbs out.
fn is_credential(path: &Path, root: &Path) -> bool {
    use std::path::Component;
    path.strip_prefix(root).is_ok_and(|rest| {
        let parts: Vec<_> = rest.components().collect();
        parts.len() == 2 && parts.iter().all(|c| matches!(c, Component::Normal(_)))
    })
}

fn read_secret_in(path: &Path, key: &str, credentials: &Path) -> Result<Zeroizing<String>, String> {
    let shown = path.display();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("{key} {shown}: {}", io(path)(e)))?;
    let meta = f.metadata().map_err(|e| format!("{key} {shown}: {e}"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o777;
    if is_credential(path, credentials) {
        if mode & 0o022 != 0 || (meta.uid() != me && meta.uid() != 0) {
            return Err(format!(
                "{key} {shown} is a service credential that another user could change (owner \
                 uid {}, mode {mode:o}); check the unit's LoadCredential= source",
                meta.uid()
            ));
        }
    } else if meta.uid() != me {
        return Err(format!(
            "{key} {shown} belongs to another user (uid {}); a secret file must be your own: \
             run 'chown {} {shown}' if it is yours",
            meta.uid(),
            std::env::var("USER").unwrap_or_else(|_| me.to_string())
        ));
    } else if mode & 0o077 != 0 {
        return Err(format!(
            "{key} {shown} is readable by group or others (mode {mode:o}); run 'chmod 600 \
             {shown}' and try again"
        ));
    }
    let mut text = Zeroizing::new(String::new());
    f.read_to_string(&mut text)
        .map_err(|e| format!("{key} {shown}: {e}"))?;
    let trimmed = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(trimmed);
    if text.is_empty() {
        return Err(format!("{key} {shown} is empty"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_folder_others_may_write_is_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        private_dir(&state).unwrap();
        chmod(&state, 0o777);
        let e = private_dir(&state).unwrap_err().to_string();
        assert!(e.contains("chmod go-w"), "{e}");
        chmod(&state, 0o755);
        private_dir(&state).unwrap();
    }

    #[test]
    fn a_config_file_others_may_change_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("config.toml");
        std::fs::write(&conf, "server = \"https://cg\"\n").unwrap();
        chmod(&conf, 0o644);
        check_config(&conf).unwrap();
        chmod(&conf, 0o666);
        let e = check_config(&conf).unwrap_err().to_string();
        assert!(e.contains("chmod go-w"), "{e}");
        chmod(&conf, 0o644);
        chmod(d.path(), 0o777);
        assert!(check_config(&conf).is_err(), "its folder too");
        chmod(d.path(), 0o700);
    }

    #[test]
    fn links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::fs::write(&target, "x").unwrap();
        let link = d.path().join("journal.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_append(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(open_lock(&link).is_err());
        assert!(read_nofollow(&link).is_err());
        assert!(read_secret_file(&link, "auth_token_file").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
    }

    #[test]
    fn atomic_replacement_leaves_one_whole_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("enrolled.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o077,
            0
        );
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn secret_files_are_checked_on_what_was_opened() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        std::fs::write(&p, "AT-1\n").unwrap();
        chmod(&p, 0o640);
        let e = read_secret_file(&p, "auth_token_file").unwrap_err();
        assert!(e.contains("chmod 600") && !e.contains("AT-1"), "{e}");
        chmod(&p, 0o600);
        assert_eq!(
            read_secret_file(&p, "auth_token_file").unwrap().as_str(),
            "AT-1"
        );
    }

    #[test]
    fn a_service_credential_is_guarded_by_its_folder_and_nothing_climbs_out() {
        let d = tempfile::tempdir().unwrap();
        let unit = d.path().join("tokenroll-relay.service");
        std::fs::create_dir(&unit).unwrap();
        let p = unit.join("app_secret");
        std::fs::write(&p, "S-1\n").unwrap();
        // systemd's own mode when it grants the service's user through an ACL.
        chmod(&p, 0o440);
        assert_eq!(
            read_secret_in(&p, "app_secret", d.path()).unwrap().as_str(),
            "S-1"
        );
        assert!(
            read_secret_file(&p, "app_secret").is_err(),
            "elsewhere: owner-only"
        );
        chmod(&p, 0o460);
        let e = read_secret_in(&p, "app_secret", d.path()).unwrap_err();
        assert!(e.contains("LoadCredential") && !e.contains("S-1"), "{e}");
        let climbing = unit.join("../tokenroll-relay.service/app_secret");
        assert!(!is_credential(&climbing, d.path()));
        assert!(!is_credential(&d.path().join("app_secret"), d.path()));
        assert!(is_credential(&p, d.path()));
    }

    #[test]
    fn no_home_means_no_state_folder_not_the_current_one() {
        let p = Paths {
            user_config: None,
            state: None,
            runtime: None,
            service_state: None,
            extra_policy: None,
            config_home: None,
            config_dirs: Vec::new(),
            credentials: None,
        };
        let e = p.state_dir().unwrap_err().to_string();
        assert!(e.contains("HOME") && e.contains("current directory"), "{e}");
        assert!(p.lock_dir().is_err());
    }
}
