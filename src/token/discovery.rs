//! Finding a PKCS#11 module on a Linux system: the p11-kit proxy, OpenSC, SoftHSM2, and the
//! modules registered with p11-kit.
//!
//! Owns: the search order and folders, p11-kit's registrations. Does not own: loading (see
//! `module`).

use super::TokenError;
use std::path::{Path, PathBuf};

/// Where p11-kit reads its module registrations (Debian's and Fedora's packages, the admin's).
const P11_KIT_CONFIG: &[&str] = &["/usr/share/p11-kit/modules", "/etc/pkcs11/modules"];

/// Where PKCS#11 modules live on Linux distributions, most specific first.
fn library_dirs() -> Vec<PathBuf> {
    let multiarch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    [
        multiarch.as_str(),
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// The p11-kit proxy (every registered module), else OpenSC, else SoftHSM2.
pub fn discover_module() -> Result<PathBuf, TokenError> {
    let names = [
        "p11-kit-proxy.so",
        "pkcs11/p11-kit-proxy.so",
        "opensc-pkcs11.so",
        "pkcs11/opensc-pkcs11.so",
        "softhsm/libsofthsm2.so",
        "libsofthsm2.so",
    ];
    for name in names {
        for dir in library_dirs() {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(TokenError::NoModule(names.join(", ")))
}

/// A library by its name under the usual library folders (`pkcs11/opensc-pkcs11.so`, say).
pub fn library(name: &str) -> Option<PathBuf> {
    library_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// SoftHSM2's module, which the demo and the test tooling need specifically.
pub fn softhsm_module() -> Option<PathBuf> {
    library_dirs()
        .into_iter()
        .flat_map(|d| [d.join("softhsm/libsofthsm2.so"), d.join("libsofthsm2.so")])
        .find(|p| p.is_file())
}

/// Every module this machine has: p11-kit's proxy and registrations, OpenSC, SoftHSM2; one path
/// per library (links resolved).
pub fn installed_modules() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut add = |p: PathBuf| {
        if seen.insert(std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone())) {
            found.push(p);
        }
    };
    for name in [
        "p11-kit-proxy.so",
        "opensc-pkcs11.so",
        "softhsm/libsofthsm2.so",
    ] {
        if let Some(p) = library(name) {
            add(p);
        }
    }
    for dir in P11_KIT_CONFIG {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "module"))
        {
            if let Some(p) = registered(f) {
                add(p);
            }
        }
    }
    found
}

/// The `module:` of one p11-kit registration, a bare name found in p11-kit's module folder.
fn registered(file: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(file).ok()?;
    let value = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "module").then(|| v.trim().to_string())
    })?;
    let p = PathBuf::from(&value);
    if p.is_absolute() {
        return Some(p);
    }
    library(&format!("pkcs11/{value}")).or(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_names_its_module_absolutely_or_in_p11_kits_folder() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.module");
        std::fs::write(&f, "# comment\nmodule: /opt/x/libx.so\ncritical: no\n").unwrap();
        assert_eq!(registered(&f), Some(PathBuf::from("/opt/x/libx.so")));
        std::fs::write(&f, "managed: yes\n").unwrap();
        assert_eq!(registered(&f), None);
        std::fs::write(&f, "module:libnowhere-at-all.so\n").unwrap();
        assert_eq!(registered(&f), Some(PathBuf::from("libnowhere-at-all.so")));
    }
}
