//! What the agent has registered: the SHA-256 of each certificate it enrolled, kept under
//! `$XDG_STATE_HOME/tokenroll/enrolled.json`, so a re-inserted token shows as enrolled.

use crate::paths::PathError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

impl Registry {
    pub fn open(dir: &Path) -> Result<Self, PathError> {
        let path = dir.join("enrolled.json");
        let data = match crate::paths::read_nofollow(&path)? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable enrollment registry");
                File::default()
            }),
            None => File::default(),
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

    /// Records a registration and replaces the file atomically (owner-only; see
    /// `paths::write_atomic`).
    pub fn add(&mut self, certificate: String, entry: Entry) -> Result<(), PathError> {
        self.data.certificates.insert(certificate, entry);
        if let Some(dir) = self.path.parent() {
            crate::paths::private_dir(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(&self.data).expect("the registry serializes");
        crate::paths::write_atomic(&self.path, &bytes)
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
