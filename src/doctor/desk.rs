//! The doctor's checks of this desk's own setup: the configuration (every file read, unknown
//! keys, permissions, the administrator's policy and what disagrees with it) and the agent
//! (running in this session, a tray to show its icon, starting with the desktop — read from the
//! autostart entries and systemd's unit links, without `systemctl`, which may not work here).
//!
//! Owns: these verdicts and the places looked at. Does not own: reading or merging the
//! configuration (see `config`) or the agent's lock (see `cli::agent`).

use super::{Check, Status};
use crate::config::{ConfigError, Layers, RawConfig};
use std::path::{Path, PathBuf};

const AGENT_UNIT: &str = "tokenroll-agent.service";
const AGENT_DESKTOP: &str = "tokenroll-agent.desktop";
/// Where systemd looks for a user unit's enablement links, the user's own first.
const USER_UNIT_DIRS: &[&str] = &[
    "/etc/systemd/user",
    "/usr/lib/systemd/user",
    "/lib/systemd/user",
];
/// Where a mask of a user unit for everyone lives (a package's removal leaves one in /etc).
const MASK_DIRS: &[&str] = &["/etc/systemd/user", "/run/systemd/user"];

pub fn config_checks(
    layers: &Result<Layers, ConfigError>,
    merged: &Result<RawConfig, ConfigError>,
) -> Vec<Check> {
    let layers = match layers {
        Ok(l) => l,
        Err(e) => {
            return vec![Check::new(
                "config",
                Status::Fail,
                e.to_string(),
                "correct the file the message names; the checks below use the defaults",
            )]
        }
    };
    let mut files: Vec<String> = Vec::new();
    if Path::new(crate::config::SYSTEM_CONFIG).is_file() {
        files.push(crate::config::SYSTEM_CONFIG.into());
    }
    if let Some(p) = layers.user_path.as_ref().filter(|p| p.is_file()) {
        files.push(p.display().to_string());
    }
    let mut out = vec![match merged {
        Ok(_) => Check::ok(
            "config",
            if files.is_empty() {
                "no configuration file; flags, variables and defaults only".to_string()
            } else {
                format!("read {}", files.join(", "))
            },
        ),
        Err(e) => Check::new(
            "config",
            Status::Fail,
            e.to_string(),
            "remove or correct the setting that disagrees with the administrator's policy",
        ),
    }];
    let p = &layers.policy;
    let mut policy_files: Vec<String> = p
        .fixed
        .values()
        .map(|(_, f)| f.display().to_string())
        .chain(p.min_algorithm.iter().map(|(_, f)| f.display().to_string()))
        .collect();
    policy_files.sort();
    policy_files.dedup();
    let keys: Vec<&str> = p
        .fixed
        .keys()
        .map(String::as_str)
        .chain(p.min_algorithm.iter().map(|_| "min_algorithm"))
        .collect();
    out.push(if keys.is_empty() {
        Check::skip(
            "policy",
            format!(
                "no administrator's policy ({})",
                crate::config::policy::SYSTEM_POLICY
            ),
        )
    } else {
        Check::ok(
            "policy",
            format!("{} fixed by {}", keys.join(", "), policy_files.join(", ")),
        )
    });
    out
}

pub fn agent_checks(paths: &crate::paths::Paths) -> Vec<Check> {
    vec![running(paths), tray(), autostart(paths)]
}

/// The agent holds its lock while it runs: a lock that is taken means it runs.
fn running(paths: &crate::paths::Paths) -> Check {
    let Ok(lock) = paths.agent_lock() else {
        return Check::skip("agent", "no runtime or state folder (HOME is not set)");
    };
    let not_running = || {
        Check::new(
            "agent",
            Status::Warn,
            "the tray agent is not running in this session",
            "start it: systemctl --user start tokenroll-agent.service, or log out and in again \
             (a helpdesk station or a pipeline needs no agent)",
        )
    };
    let Ok(f) = std::fs::File::open(&lock) else {
        return not_running();
    };
    match f.try_lock_shared() {
        Err(std::fs::TryLockError::WouldBlock) => {
            Check::ok("agent", "the tray agent runs in this session")
        }
        _ => not_running(),
    }
}

/// A StatusNotifierItem host on the session bus, to show the agent's icon.
fn tray() -> Check {
    match crate::ui::tray::tray_host() {
        Err(e) => Check::skip("tray", format!("no desktop session bus here ({e})")),
        Ok(true) => Check::ok(
            "tray",
            "the desktop shows tray icons (a StatusNotifierItem host)",
        ),
        Ok(false) => Check::new(
            "tray",
            Status::Warn,
            "the desktop has no tray for the agent's icon; the agent still works and notifies",
            "on GNOME, install and turn on the AppIndicator extension \
             (gnome-shell-extension-appindicator)",
        ),
    }
}

/// Whether an autostart entry or unit file turns the agent off (`Hidden=true`, or a mask).
fn turned_off(entry: &Path) -> bool {
    if std::fs::read_link(entry).is_ok_and(|t| t == Path::new("/dev/null")) {
        return true;
    }
    std::fs::read_to_string(entry).is_ok_and(|text| {
        text.lines().any(|l| {
            let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            l.eq_ignore_ascii_case("Hidden=true")
                || l.eq_ignore_ascii_case("X-GNOME-Autostart-enabled=false")
        })
    })
}

fn autostart(paths: &crate::paths::Paths) -> Check {
    let home = paths.config_home.clone();
    let user_entry = home
        .as_ref()
        .map(|h| h.join("autostart").join(AGENT_DESKTOP));
    let user_units = home.as_ref().map(|h| h.join("systemd/user"));
    let unit_dirs: Vec<PathBuf> = user_units
        .iter()
        .cloned()
        .chain(USER_UNIT_DIRS.iter().map(PathBuf::from))
        .collect();
    // A mask in the user's folder, /etc or /run turns the unit off whatever enables it.
    let mask = user_units
        .iter()
        .cloned()
        .chain(MASK_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(AGENT_UNIT))
        .find(|u| turned_off(u));
    let unit = match &mask {
        Some(_) => None,
        None => unit_dirs.iter().find_map(|d| wants_link(d)),
    };
    // The user's own entry, when there is one, replaces the system's.
    let entry = match user_entry.as_ref().filter(|e| e.is_file()) {
        Some(e) => (!turned_off(e)).then(|| e.clone()),
        None => paths
            .config_dirs
            .iter()
            .map(|d| d.join("autostart").join(AGENT_DESKTOP))
            .find(|e| e.is_file() && !turned_off(e)),
    };
    let hidden_by_user = user_entry.filter(|e| e.is_file() && turned_off(e));
    let mut ways = Vec::new();
    if let Some(e) = &entry {
        ways.push(format!("the autostart entry {}", e.display()));
    }
    if let Some(link) = &unit {
        ways.push(format!(
            "the systemd user unit (enabled by {})",
            link.display()
        ));
    }
    if !ways.is_empty() {
        let mut detail = format!("starts with the desktop: {}", ways.join("; "));
        if let Some(h) = &hidden_by_user {
            detail.push_str(&format!(
                " (the user's {} hides the autostart entry; sessions run by systemd still start \
                 the unit)",
                h.display()
            ));
        }
        return Check::ok("autostart", detail);
    }
    let mut off = Vec::new();
    if let Some(h) = &hidden_by_user {
        off.push(format!("{} hides the autostart entry", h.display()));
    }
    if let Some(m) = &mask {
        off.push(format!("{} masks the unit", m.display()));
    }
    if off.is_empty() {
        Check::new(
            "autostart",
            Status::Warn,
            "the agent does not start with the desktop",
            "install the tokenroll package (it sets both up), or run: systemctl --user enable \
             tokenroll-agent.service",
        )
    } else {
        let mut fix = String::from("to start the agent with the desktop again:");
        if let Some(h) = &hidden_by_user {
            fix.push_str(&format!(" rm {};", h.display()));
        }
        if mask.is_some() {
            fix.push_str(" systemctl --user unmask tokenroll-agent.service (or, for a mask in /etc, systemctl --global unmask);");
        }
        Check::new(
            "autostart",
            Status::Warn,
            format!("turned off: {}", off.join("; ")),
            fix.trim_end_matches(';'),
        )
    }
}

/// A `*.wants/tokenroll-agent.service` link in `dir`.
fn wants_link(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name();
        let wants = name.to_string_lossy().ends_with(".wants");
        let link = e.path().join(AGENT_UNIT);
        (wants && link.symlink_metadata().is_ok()).then_some(link)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_or_unit_turned_off_is_recognised() {
        let d = tempfile::tempdir().unwrap();
        let e = d.path().join("a.desktop");
        std::fs::write(&e, "[Desktop Entry]\nHidden = true\n").unwrap();
        assert!(turned_off(&e));
        std::fs::write(&e, "[Desktop Entry]\nExec=tokenroll agent\n").unwrap();
        assert!(!turned_off(&e));
        let m = d.path().join("u.service");
        std::os::unix::fs::symlink("/dev/null", &m).unwrap();
        assert!(turned_off(&m));
        let wants = d.path().join("graphical-session.target.wants");
        std::fs::create_dir(&wants).unwrap();
        assert_eq!(wants_link(d.path()), None);
        std::os::unix::fs::symlink("/usr/lib/systemd/user/x", wants.join(AGENT_UNIT)).unwrap();
        assert_eq!(wants_link(d.path()), Some(wants.join(AGENT_UNIT)));
    }
}
