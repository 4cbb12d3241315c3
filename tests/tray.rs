//! The agent with its tray on a private D-Bus session and no X server: the StatusNotifierItem is
//! published, its menu is read and clicked over `com.canonical.dbusmenu`, the PIN comes from a
//! scripted pinentry, notifications are captured with dbus-monitor, and the simulator sees the
//! registration.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Bus {
    daemon: Child,
    address: String,
}

impl Bus {
    fn start() -> Self {
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is installed (apt-get install dbus)");
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            daemon,
            address: line.trim().to_string(),
        }
    }

    fn send(&self, args: &[&str]) -> String {
        let o = Command::new("dbus-send")
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .args(["--session", "--print-reply"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// (id, label, enabled) of every item of a dbusmenu layout as dbus-send prints it.
fn menu_items(layout: &str) -> Vec<(i32, String, bool)> {
    let mut items = Vec::new();
    let lines: Vec<&str> = layout.lines().map(str::trim).collect();
    for (i, l) in lines.iter().enumerate() {
        let Some(id) = l.strip_prefix("int32 ").and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // The properties follow until the next item's id.
        let mut label = String::new();
        let mut enabled = true;
        for (j, p) in lines.iter().enumerate().skip(i + 1) {
            if p.starts_with("int32 ") {
                break;
            }
            let next = lines.get(j + 1).copied().unwrap_or("");
            if *p == "string \"label\"" {
                label = next
                    .trim_start_matches("variant")
                    .trim()
                    .trim_start_matches("string ")
                    .trim_matches('"')
                    .to_string();
            }
            if *p == "string \"enabled\"" && next.contains("boolean false") {
                enabled = false;
            }
        }
        items.push((id, label, enabled));
    }
    items
}

fn wait_for(what: &str, log: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}; agent log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_agent(env: &TestEnv, sim: &Sim, bus: &Bus) -> Child {
    env.agent_cmd(sim)
        .args(["--user", "alice"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .spawn()
        .unwrap()
}

/// The whole menu, as `com.canonical.dbusmenu.GetLayout` returns it.
fn layout(bus: &Bus, item: &str) -> String {
    bus.send(&[
        &format!("--dest={item}"),
        "/MenuBar",
        "com.canonical.dbusmenu.GetLayout",
        "int32:0",
        "int32:-1",
        "array:string:",
    ])
}

fn click(bus: &Bus, item: &str, id: i32) {
    bus.send(&[
        &format!("--dest={item}"),
        "/MenuBar",
        "com.canonical.dbusmenu.Event",
        &format!("int32:{id}"),
        "string:clicked",
        "variant:int32:0",
        "uint32:0",
    ]);
}

#[test]
fn choose_certificate_when_a_token_holds_several() {
    let mut env = TestEnv::new();
    env.provision("dave", true, "rsa2048", "01", "CN=Dave RSA", &[]);
    env.provision("dave", false, "p256", "02", "CN=Dave EC", &[]);
    let sim = env.simulator(&[]);
    let bus = Bus::start();
    std::fs::write(env.path("pins.txt"), format!("{PIN}\n")).unwrap();
    let mut agent = start_agent(&env, &sim, &bus);
    let state = env.path("state");
    let log = || std::fs::read_to_string(state.join("tokenroll/agent.log")).unwrap_or_default();
    let item = format!("org.kde.StatusNotifierItem-{}-1", agent.id());
    let layout = || layout(&bus, &item);
    wait_for("the choices", log, || layout().contains("dave: CN=Dave EC"));
    let items = menu_items(&layout());
    let plain = items
        .iter()
        .find(|(_, l, _)| l.starts_with("Enroll"))
        .unwrap();
    assert!(
        !plain.2,
        "no single Enroll item when a choice is needed: {items:?}"
    );
    let ec = items
        .iter()
        .find(|(_, l, _)| l == "dave: CN=Dave EC")
        .unwrap()
        .0;
    assert!(
        items.iter().any(|(_, l, _)| l == "dave: CN=Dave RSA"),
        "{items:?}"
    );
    click(&bus, &item, ec);
    wait_for("the registration", log, || {
        sim.records().iter().any(|r| r["answer_code"] == 0)
    });
    assert_eq!(sim.records()[0]["signer_subject"], "CN=Dave EC");
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn tray_menu_enrolls_and_notifies() {
    let mut env = TestEnv::new();
    env.provision("alice", true, "p256", "01", "CN=alice", &[]);
    let sim = env.simulator(&[]);
    let bus = Bus::start();
    let notes = env.path("notifications.txt");
    let mut monitor = Command::new("dbus-monitor")
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .args([
            "--session",
            "interface='org.freedesktop.Notifications',member='Notify'",
        ])
        .stdout(std::fs::File::create(&notes).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(env.path("pins.txt"), format!("{PIN}\n")).unwrap();
    let state = env.path("state");
    let mut agent = start_agent(&env, &sim, &bus);
    let log = || std::fs::read_to_string(state.join("tokenroll/agent.log")).unwrap_or_default();
    let item = format!("org.kde.StatusNotifierItem-{}-1", agent.id());
    let layout = || layout(&bus, &item);

    // Published under the name the spec gives, with its menu at /MenuBar.
    wait_for("the tray item", log, || {
        bus.send(&[
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListNames",
        ])
        .contains(&item)
    });
    let menu_path = bus.send(&[
        &format!("--dest={item}"),
        "/StatusNotifierItem",
        "org.freedesktop.DBus.Properties.Get",
        "string:org.kde.StatusNotifierItem",
        "string:Menu",
    ]);
    assert!(menu_path.contains("/MenuBar"), "{menu_path}");
    wait_for("the token in the status line", log, || {
        layout().contains("alice: not enrolled")
    });
    let items = menu_items(&layout());
    let labels: Vec<&str> = items.iter().map(|(_, l, _)| l.as_str()).collect();
    assert!(
        labels.contains(&"Open log") && labels.contains(&"Quit"),
        "{items:?}"
    );
    let (enroll, _, enabled) = items
        .iter()
        .find(|(_, l, _)| l == "Enroll token alice…")
        .expect("enroll item")
        .clone();
    assert!(enabled, "{items:?}");

    // Click it: the scripted pinentry answers, the simulator registers.
    bus.send(&[
        &format!("--dest={item}"),
        "/MenuBar",
        "com.canonical.dbusmenu.Event",
        &format!("int32:{enroll}"),
        "string:clicked",
        "variant:int32:0",
        "uint32:0",
    ]);
    wait_for("the registration", log, || {
        sim.records()
            .iter()
            .any(|r| r["answer_code"] == 0 && r["username"] == "alice")
    });
    wait_for("the status line to change", log, || {
        layout().contains("alice: registered")
    });
    let after = menu_items(&layout());
    assert!(
        after
            .iter()
            .all(|(_, l, e)| !l.starts_with("Enroll token") || !e),
        "nothing left to enroll: {after:?}"
    );

    // Notifications went out over D-Bus.
    wait_for("the notifications", log, || {
        let n = std::fs::read_to_string(&notes).unwrap_or_default();
        n.contains("Token alice inserted") && n.contains("Token alice registered")
    });

    // Quit from the menu ends the agent cleanly.
    let quit = after.iter().find(|(_, l, _)| l == "Quit").unwrap().0;
    bus.send(&[
        &format!("--dest={item}"),
        "/MenuBar",
        "com.canonical.dbusmenu.Event",
        &format!("int32:{quit}"),
        "string:clicked",
        "variant:int32:0",
        "uint32:0",
    ]);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "Quit did not end the agent"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let _ = monitor.kill();
    let _ = monitor.wait();
}
