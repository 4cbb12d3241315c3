//! Finding a PKCS#11 module on a Linux system: the p11-kit proxy, OpenSC, SoftHSM2.
//!
//! Owns: the search order and folders. Does not own: loading (see `module`).

use super::TokenError;
use std::path::PathBuf;

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
