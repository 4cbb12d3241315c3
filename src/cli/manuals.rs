//! What packages install beside the binary, made from the command line's own definitions:
//! `tokenroll completions SHELL` (clap_complete) and the man pages (clap_mangen):
//! `tokenroll(1)` and one page per subcommand, `tokenroll-SUBCOMMAND(1)`, as git and cargo name
//! theirs.
//!
//! Owns: writing them. Does not own: the definitions (see `args`) or where a package puts them
//! (see `packaging/`).

use super::exit;
use clap::CommandFactory;
use std::path::Path;

pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell, &mut cmd, "tokenroll", &mut std::io::stdout());
    exit::OK
}

/// One page's roff for `cmd`, named `name` (tokenroll, or tokenroll-SUBCOMMAND).
fn page(cmd: clap::Command, name: &str) -> std::io::Result<Vec<u8>> {
    let cmd = cmd.name(name.to_string());
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

pub fn manpages(dir: &Path) -> i32 {
    let written = (|| -> std::io::Result<usize> {
        std::fs::create_dir_all(dir)?;
        let root = super::Cli::command();
        let mut n = 0;
        std::fs::write(dir.join("tokenroll.1"), page(root.clone(), "tokenroll")?)?;
        n += 1;
        for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("tokenroll-{}", sub.get_name());
            std::fs::write(dir.join(format!("{name}.1")), page(sub.clone(), &name)?)?;
            n += 1;
        }
        Ok(n)
    })();
    match written {
        Ok(n) => {
            eprintln!(
                "{n} man pages written to {}",
                crate::text::plain(&dir.display().to_string())
            );
            exit::OK
        }
        Err(e) => {
            eprintln!(
                "tokenroll: cannot write the man pages into {}: {e}",
                crate::text::plain(&dir.display().to_string())
            );
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn completions_know_the_subcommands_and_their_flags() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut super::super::Cli::command(),
                "tokenroll",
                &mut out,
            );
            let text = String::from_utf8(out).unwrap();
            for word in ["station", "enroll", "batch", "on-bound", "relay"] {
                assert!(text.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn every_visible_subcommand_gets_a_page() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::manpages(dir.path()), 0);
        let root = std::fs::read_to_string(dir.path().join("tokenroll.1")).unwrap();
        assert!(
            root.starts_with(".ie") || root.contains(".TH tokenroll 1"),
            "{root}"
        );
        for name in [
            "enroll",
            "station",
            "agent",
            "relay",
            "config",
            "completions",
        ] {
            let p = dir.path().join(format!("tokenroll-{name}.1"));
            let text = std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("{}", p.display()));
            assert!(text.contains(&format!(".TH tokenroll-{name} 1")), "{text}");
        }
        assert!(
            !dir.path().join("tokenroll-provision.1").exists(),
            "hidden test tooling gets no page"
        );
        let station = std::fs::read_to_string(dir.path().join("tokenroll-station.1")).unwrap();
        assert!(
            station.contains("batch") && station.contains("lanes"),
            "{station}"
        );
    }
}
