//! The tray icon (tray-icon's pure-Rust ksni backend: a StatusNotifierItem, no GTK, no X server).
//!
//! Owns: the icon, its tooltip and its menu — a status line, "Enroll this token…", "Open log",
//! "Quit" — and turning menu clicks into commands. `TrayIcon` and its menu items are not `Send`:
//! the tray lives in the task that `block_on` runs.

use crate::agent::state::Mood;
use crate::agent::{EnrollRequest, View};
use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

/// What a click in the menu asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Enroll(EnrollRequest),
    OpenLog,
    Quit,
}

fn icon(mood: Mood) -> Icon {
    let bytes: &[u8] = match mood {
        Mood::Idle => include_bytes!("../../assets/tokenroll-idle.png"),
        Mood::Ok => include_bytes!("../../assets/tokenroll-ok.png"),
        Mood::Present => include_bytes!("../../assets/tokenroll-present.png"),
        Mood::Error => include_bytes!("../../assets/tokenroll-error.png"),
        Mood::Busy => include_bytes!("../../assets/tokenroll-busy.png"),
    };
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("bundled icon is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("sized")];
    let info = reader.next_frame(&mut buf).expect("bundled icon decodes");
    buf.truncate(info.buffer_size());
    Icon::from_rgba(buf, info.width, info.height).expect("bundled icon is RGBA")
}

pub struct Tray {
    tray: TrayIcon,
    status: MenuItem,
    enroll: MenuItem,
    choose: Submenu,
    /// The menu ids of "Enroll" entries, rebuilt with the view.
    targets: Vec<(tray_icon::menu::MenuId, EnrollRequest)>,
    log: MenuItem,
    quit: MenuItem,
    shown: View,
}

impl Tray {
    pub fn new() -> Result<Self, String> {
        let status = MenuItem::new("No token inserted", false, None);
        let enroll = MenuItem::new("Enroll this token…", false, None);
        let choose = Submenu::new("Choose certificate", false);
        let log = MenuItem::new("Open log", true, None);
        let quit = MenuItem::new("Quit", true, None);
        let menu = Menu::new();
        menu.append_items(&[
            &status,
            &PredefinedMenuItem::separator(),
            &enroll,
            &choose,
            &log,
            &quit,
        ])
        .map_err(|e| e.to_string())?;
        let tray = TrayIconBuilder::new()
            .with_id("tokenroll")
            .with_title("tokenroll")
            .with_tooltip("tokenroll: no token inserted")
            .with_icon(icon(Mood::Idle))
            .with_menu(Box::new(menu))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tray,
            status,
            enroll,
            choose,
            targets: Vec::new(),
            log,
            quit,
            shown: View::default(),
        })
    }

    /// Shows `view`; only what changed is sent over D-Bus.
    pub fn show(&mut self, view: &View) {
        if *view == self.shown {
            return;
        }
        self.status.set_text(&view.status);
        let _ = self
            .tray
            .set_tooltip(Some(format!("tokenroll: {}", view.status)));
        if view.icon != self.shown.icon {
            let _ = self.tray.set_icon(Some(icon(view.icon)));
        }
        if view.enrollable != self.shown.enrollable {
            // One token with one certificate: a plain item. Otherwise "Choose certificate" names
            // each token, and each certificate of a token that holds several.
            self.targets.clear();
            while self.choose.remove_at(0).is_some() {}
            let mut entries = Vec::new();
            for (key, pairs) in &view.enrollable {
                if pairs.len() <= 1 {
                    let request = EnrollRequest {
                        key: key.clone(),
                        uri: None,
                    };
                    entries.push((
                        format!("{} (serial {})", key.label, key.serial),
                        request,
                        true,
                    ));
                } else {
                    for p in pairs {
                        let request = EnrollRequest {
                            key: key.clone(),
                            uri: Some(p.uri.clone()),
                        };
                        entries.push((format!("{}: {}", key.label, p.subject), request, false));
                    }
                }
            }
            match entries.as_slice() {
                [(_, request, true)] => {
                    self.enroll.set_enabled(true);
                    self.enroll
                        .set_text(format!("Enroll token {}…", request.key.label));
                    self.targets
                        .push((self.enroll.id().clone(), request.clone()));
                    self.choose.set_enabled(false);
                }
                [] => {
                    self.enroll.set_enabled(false);
                    self.enroll.set_text("Enroll this token…");
                    self.choose.set_enabled(false);
                }
                many => {
                    self.enroll.set_enabled(false);
                    self.enroll.set_text("Enroll this token…");
                    self.choose.set_enabled(true);
                    for (text, request, _) in many {
                        let item = MenuItem::new(text, true, None);
                        let _ = self.choose.append(&item);
                        self.targets.push((item.id().clone(), request.clone()));
                    }
                }
            }
        }
        self.shown = view.clone();
    }

    /// The command a menu click means, if any.
    pub fn command(&self, event: &MenuEvent) -> Option<Command> {
        if event.id == *self.log.id() {
            Some(Command::OpenLog)
        } else if event.id == *self.quit.id() {
            Some(Command::Quit)
        } else {
            self.targets
                .iter()
                .find(|(id, _)| *id == event.id)
                .map(|(_, k)| Command::Enroll(k.clone()))
        }
    }
}

/// Forwards menu clicks from tray-icon's global channel into the agent's loop.
pub fn forward_menu_events(tx: tokio::sync::mpsc::UnboundedSender<MenuEvent>) {
    MenuEvent::set_event_handler(Some(move |e| {
        let _ = tx.send(e);
    }));
}

/// Is a StatusNotifierItem host (a tray) registered on the session bus? `Err` when there is no
/// session bus to ask.
pub fn tray_host() -> Result<bool, String> {
    let conn = zbus::blocking::Connection::session().map_err(|e| e.to_string())?;
    let bus = zbus::blocking::fdo::DBusProxy::new(&conn).map_err(|e| e.to_string())?;
    let watcher = zbus::names::BusName::try_from("org.kde.StatusNotifierWatcher")
        .map_err(|e| e.to_string())?;
    bus.name_has_owner(watcher).map_err(|e| e.to_string())
}

/// [`tray_host`], with no bus taken as no tray.
pub fn tray_host_present() -> bool {
    tray_host().unwrap_or(false)
}
