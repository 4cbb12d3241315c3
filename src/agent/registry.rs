//! What the agent has registered: the SHA-256 of each certificate it enrolled, kept under
//! `$XDG_STATE_HOME/tokenroll/enrolled.json`, so a re-inserted token shows as enrolled.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    pub token: String,
    pub registered_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    certificates: BTreeMap<String, Entry>,
}

pub struct Registry {
    path: PathBuf,
    data: File,
}

/// `$XDG_STATE_HOME/tokenroll`, falling back to `~/.local/state/tokenroll`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("tokenroll")
}

/// Creates `dir` (and parents) readable by its owner only.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl Registry {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("enrolled.json");
        let data = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable enrollment registry");
                File::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(e),
        };
        Ok(Self { path, data })
    }

    pub fn contains_any(&self, certificates: &[String]) -> bool {
        certificates
            .iter()
            .any(|c| self.data.certificates.contains_key(c))
    }

    pub fn get(&self, certificate: &str) -> Option<&Entry> {
        self.data.certificates.get(certificate)
    }

    /// Records a registration and writes the file atomically (owner-only).
    pub fn add(&mut self, certificate: String, entry: Entry) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        self.data.certificates.insert(certificate, entry);
        if let Some(dir) = self.path.parent() {
            private_dir(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&self.data).expect("serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        assert!(!r.contains_any(&["aa".into()]));
        r.add(
            "aa".into(),
            Entry {
                user: "alice".into(),
                token: "t".into(),
                registered_at: 1,
            },
        )
        .unwrap();
        let r = Registry::open(dir.path()).unwrap();
        assert!(r.contains_any(&["bb".into(), "aa".into()]));
        assert_eq!(r.get("aa").unwrap().user, "alice");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("enrolled.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
}
