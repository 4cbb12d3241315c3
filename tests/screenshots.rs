//! The agent as a person sees it, for real: Xvfb, xfce4-panel's system tray, pinentry-gtk2, a
//! right-click on the icon, a click on "Enroll token …", the PIN typed into the dialog, and the
//! registration recorded by the simulator (`tests/screenshots/run.sh` checks it). The PNGs it takes
//! are checked here; `tests/screenshots/run.sh` without arguments refreshes the README's copies.

use std::process::Command;

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn screenshots_of_the_tray_menu_and_pin_dialog() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/screenshots/run.sh"
    ))
    .arg(out.path())
    .env("TOKENROLL_BIN", env!("CARGO_BIN_EXE_tokenroll"))
    .env_remove("DBUS_SESSION_BUS_ADDRESS")
    .env_remove("DISPLAY")
    .output()
    .unwrap();
    assert!(
        o.status.success(),
        "the screenshot run failed (needs xvfb xfce4-panel pinentry-gtk2 xdotool imagemagick dbus):\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(png_size(&out.path().join("tray.png")), (800, 40));
    assert_eq!(png_size(&out.path().join("menu.png")), (800, 420));
    assert_eq!(png_size(&out.path().join("pin.png")), (800, 420));
    // The icon changed colour once the token was registered.
    let before = std::fs::read(out.path().join("tray.png")).unwrap();
    let after = std::fs::read(out.path().join("tray-registered.png")).unwrap();
    assert_ne!(before, after);
}
