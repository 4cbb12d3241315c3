//! The station as a helpdesk runs it: `tokenroll station --headless --jsonl` against the
//! simulator over TLS, SoftHSM2 tokens made by another process while it runs, the report read
//! back, every registered PKCS#7 cross-verified by openssl.

mod card;
#[path = "../common/mod.rs"]
mod common;
mod lock;
mod modes;
mod restart;
mod tui;
use common::*;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The flags that give the SoftHSM tokens' shared PIN.
pub const PIN_ENV: [&str; 2] = ["--pin-env", "TOKENROLL_PIN"];

/// A running station and the JSONL events it printed so far.
pub struct Station {
    pub child: Child,
    pub events: Arc<Mutex<Vec<serde_json::Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Station {
    /// Events named `name` so far.
    pub fn named(&self, name: &str) -> Vec<serde_json::Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == name)
            .cloned()
            .collect()
    }

    /// Waits up to 60 s until `n` tokens are done.
    pub fn wait_done(&self, n: usize) {
        let t = Instant::now();
        while self.named("done").len() < n {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{} of {n} tokens done; events: {:#?}",
                self.named("done").len(),
                self.events.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to end by itself (60 s), and returns its exit code.
    pub fn end(mut self) -> (i32, Vec<serde_json::Value>) {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the station did not end; events: {:#?}",
                self.events.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let events = self.events.lock().unwrap().clone();
        (status.code().unwrap_or(-1), events)
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tokenroll station --headless --jsonl` against `sim` with the report `report.csv`, the
/// scripted pinentry, and `extra` (the test PIN is in TOKENROLL_PIN, for `PIN_ENV`).
pub fn station_cmd(env: &TestEnv, sim: &Sim, extra: &[&str]) -> Command {
    station_cmd_reporting_to(env, sim, &env.path("report.csv"), extra)
}

/// As `station_cmd`, with the report at `report` (as given: relative to the command's folder).
pub fn station_cmd_reporting_to(
    env: &TestEnv,
    sim: &Sim,
    report: &std::path::Path,
    extra: &[&str],
) -> Command {
    let mut c = env.cmd();
    c.args([
        "station",
        "--headless",
        "--jsonl",
        "--server",
        &sim.origin,
        "--admin",
        ADMIN,
    ])
    .arg("--ca-file")
    .arg(&sim.ca)
    .arg("--report")
    .arg(report)
    .arg("--pinentry")
    .arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pinentry.sh"
    ))
    .args(extra)
    .env("TOKENROLL_POLL_MS", "100")
    .env("XDG_STATE_HOME", env.path("state"))
    .env("TEST_PINS", env.path("pins.txt"))
    .env("PINENTRY_LOG", env.path("pinentry.log"))
    .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
    .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
    .stdout(Stdio::piped())
    .stderr(Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(env.path("station.err"))
            .unwrap(),
    ));
    c
}

pub fn start(mut cmd: Command) -> Station {
    let mut child = cmd.spawn().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let sink = events.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            sink.lock().unwrap().push(v);
        }
    });
    Station {
        child,
        events,
        reader: Some(reader),
    }
}

/// A token `label` with a P-256 pair for `cn`, made by another process (`tokenroll provision`).
pub fn token(env: &TestEnv, label: &str, cn: &str) -> PathBuf {
    env.provision(label, true, "p256", "01", &format!("CN={cn},O=Acme"), &[])
}

/// Each token's serial, by label.
pub fn serials(env: &TestEnv) -> std::collections::HashMap<String, String> {
    let j = json(&env.run(&["tokens", "--json"]));
    j["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["label"].as_str().unwrap().to_string(),
                t["serial"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The report's rows as maps of column → value.
pub fn report(env: &TestEnv) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(env.path("report.csv")).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>().join(","),
        "time,reader,token_label,token_serial,username,cert_subject,cert_serial,cert_sha256,status,outcome,code,message,seconds"
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The registrations the simulator judged (not the preflight's session check).
pub fn registrations(sim: &Sim) -> Vec<serde_json::Value> {
    sim.records()
        .into_iter()
        .filter(|r| r["session_check"] != true)
        .collect()
}

/// Every registration that reached the simulator, its PKCS#7 verified by openssl against the
/// signer's own certificate `certs[username]`. Returns (username, signer subject) pairs.
pub fn verified_registrations(
    env: &TestEnv,
    sim: &Sim,
    certs: &std::collections::HashMap<&str, PathBuf>,
) -> Vec<(String, String)> {
    use base64::Engine;
    let mut out = Vec::new();
    for (i, r) in registrations(sim).iter().enumerate() {
        let user = r["username"].as_str().unwrap().to_string();
        let der = base64::engine::general_purpose::STANDARD
            .decode(r["signature"].as_str().unwrap())
            .unwrap();
        let p7 = env.path(&format!("reg{i}.p7"));
        std::fs::write(&p7, der).unwrap();
        let signer = r["signer_subject"].as_str().unwrap_or_default().to_string();
        let cert = certs
            .iter()
            .find(|(cn, _)| signer.contains(&format!("CN={cn}")))
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no certificate for signer {signer}"));
        let content = openssl_verify(&p7, &cert);
        assert_eq!(
            r["signed_content"].as_str().map(str::as_bytes),
            Some(&content[..])
        );
        out.push((user, signer));
    }
    out
}

/// With serials: each token goes to the row of its serial (case and spaces aside), a token whose
/// serial is not in the batch is refused and said so; the report, the JSONL events and the HTML
/// report agree.
#[test]
fn a_batch_with_serials_gives_each_token_its_row() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let certs: std::collections::HashMap<&str, PathBuf> = [
        ("Token One", token(&env, "one", "Token One")),
        ("Token Two", token(&env, "two", "Token Two")),
        ("Stranger", token(&env, "stranger", "Stranger")),
    ]
    .into_iter()
    .collect();
    let s = serials(&env);
    std::fs::write(
        env.path("batch.csv"),
        format!(
            "\u{feff}serial,username\r\n\" {} \",user1\r\n{},user2\r\n",
            s["two"].to_uppercase(),
            s["one"]
        ),
    )
    .unwrap();
    let mut cmd = station_cmd(
        &env,
        &sim,
        &[PIN_ENV[0], PIN_ENV[1], "--lanes", "2", "--batch"],
    );
    cmd.arg(env.path("batch.csv"))
        .arg("--html")
        .arg(env.path("report.html"));
    let (code, events) = start(cmd).end();
    assert_eq!(code, 0, "{events:#?}");
    let rows = report(&env);
    let by_label = |l: &str| rows.iter().find(|r| r["token_label"] == l).unwrap();
    assert_eq!(by_label("two")["username"], "user1");
    assert_eq!(by_label("one")["username"], "user2");
    for l in ["one", "two"] {
        let r = by_label(l);
        assert_eq!(r["outcome"], "registered", "{r:?}");
        assert_eq!(r["status"], "pending");
        assert_eq!(r["code"], "0");
        assert_eq!(r["cert_sha256"].len(), 64);
        assert!(r["seconds"].contains('.') && r["seconds"].split('.').nth(1).unwrap().len() == 3);
    }
    let stranger = by_label("stranger");
    assert_eq!(stranger["outcome"], "skipped");
    assert!(
        stranger["message"].contains("not in the batch"),
        "{stranger:?}"
    );
    let mut regs = verified_registrations(&env, &sim, &certs);
    regs.sort();
    assert_eq!(
        regs,
        vec![
            ("user1".to_string(), "CN=Token Two,O=Acme".to_string()),
            ("user2".to_string(), "CN=Token One,O=Acme".to_string())
        ]
    );
    // The events: each token's phases in order, and the summary last.
    for l in ["one", "two"] {
        let phases: Vec<String> = events
            .iter()
            .filter(|e| e["token_label"] == l)
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            phases,
            ["seen", "waiting_pin", "signing", "registering", "done"],
            "{events:#?}"
        );
    }
    let last = events.last().unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(
        (last["registered"].as_u64(), last["skipped"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(last["unsettled"], 0);
    assert!(last["slowest_phase"]["phase"].is_string(), "{last}");
    // The HTML report names the final CSV by its SHA-256, and holds every row.
    let html = std::fs::read_to_string(env.path("report.html")).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(env.path("report.csv")).unwrap(),
        ))
    };
    assert!(
        html.contains(&format!("<code id=\"csv-sha256\">{sha}</code>")),
        "{html}"
    );
    assert_eq!(html.matches("<td class=\"registered\">").count(), 2);
    assert_eq!(html.matches("<td class=\"skipped\">").count(), 1);
}

/// Without serials, tokens take the rows in the order they arrive — made by another process
/// while the station runs, one, then two at once — and the run ends when every row is settled.
#[test]
fn tokens_made_while_it_runs_take_the_rows_in_order() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    std::fs::write(
        env.path("batch.csv"),
        "username,status\nuser3,\nuser4,valid\nuser5,4\n",
    )
    .unwrap();
    let mut cmd = station_cmd(
        &env,
        &sim,
        &[PIN_ENV[0], PIN_ENV[1], "--lanes", "2", "--batch"],
    );
    cmd.arg(env.path("batch.csv"));
    let station = start(cmd);
    let mut certs = std::collections::HashMap::new();
    certs.insert("First", token(&env, "first", "First"));
    station.wait_done(1);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| token(&env, "second", "Second"));
        let b = s.spawn(|| token(&env, "third", "Third"));
        (a.join().unwrap(), b.join().unwrap())
    });
    certs.insert("Second", a);
    certs.insert("Third", b);
    let (code, events) = station.end();
    assert_eq!(code, 0, "{events:#?}");
    let rows = report(&env);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["token_label"], "first");
    assert_eq!(rows[0]["username"], "user3");
    assert_eq!(rows[0]["status"], "pending");
    let mut later: Vec<(&str, &str)> = rows[1..]
        .iter()
        .map(|r| (r["username"].as_str(), r["status"].as_str()))
        .collect();
    later.sort();
    assert_eq!(later, [("user4", "valid"), ("user5", "deactivated")]);
    assert!(rows.iter().all(|r| r["outcome"] == "registered"));
    let regs = verified_registrations(&env, &sim, &certs);
    assert_eq!(regs.len(), 3);
    assert_eq!(
        registrations(&sim)
            .iter()
            .find(|r| r["username"] == "user5")
            .unwrap()["status"],
        "4"
    );
}

/// One token refuses the shared --pin-env PIN while another lane registers: the refused token's
/// holder is asked to type the PIN, and a PIN it refused is never sent to it again (the dialog
/// says so and asks again, until the holder gives up); the run ends with exit 1 (a row skipped).
#[test]
fn a_wrong_pin_on_one_token_while_another_lane_succeeds() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let good = token(&env, "good", "Good");
    let out = env
        .cmd()
        .args([
            "provision",
            "--label",
            "bad",
            "--init",
            "--key-type",
            "p256",
            "--subject",
            "CN=Bad",
        ])
        .env("TOKENROLL_PIN", "999999")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Typed PINs: the shared one, again and again; then the holder gives up (no line left).
    pins(&env, &[PIN, PIN, PIN, PIN]);
    std::fs::write(env.path("batch.csv"), "username\nuser1\nuser2\n").unwrap();
    let mut cmd = station_cmd(
        &env,
        &sim,
        &[PIN_ENV[0], PIN_ENV[1], "--lanes", "2", "--batch"],
    );
    cmd.arg(env.path("batch.csv"));
    let (code, events) = start(cmd).end();
    assert_eq!(code, 1, "{events:#?}");
    let rows = report(&env);
    let good_row = rows.iter().find(|r| r["token_label"] == "good").unwrap();
    assert_eq!(good_row["outcome"], "registered", "{rows:?}");
    let bad_row = rows.iter().find(|r| r["token_label"] == "bad").unwrap();
    assert_eq!(bad_row["outcome"], "skipped", "{rows:?}");
    assert!(bad_row["message"].contains("cancelled"), "{bad_row:?}");
    assert_eq!(bad_row["code"], "");
    // The bad token was tried once (the shared PIN); every later PIN was that one again and
    // was not sent: the dialog said so instead of reporting another wrong PIN.
    let dialog = std::fs::read_to_string(env.path("pinentry.log")).unwrap();
    let errors: Vec<&str> = dialog
        .lines()
        .filter(|l| l.starts_with("SETERROR"))
        .collect();
    assert_eq!(
        errors.iter().filter(|l| l.contains("wrong PIN")).count(),
        1,
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|l| l.contains("already refused")),
        "{errors:#?}"
    );
    let certs = [("Good", good)].into_iter().collect();
    assert_eq!(verified_registrations(&env, &sim, &certs).len(), 1);
}

/// Bad batch files: every problem is named with its line before anything starts (exit 2), and
/// no report is written.
#[test]
fn a_bad_batch_is_refused_with_every_line_named() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    std::fs::write(
        env.path("batch.csv"),
        "username,serial,status,extra\nalice,1,\n,2,\nalice,3,\nbob,1,sometimes\n",
    )
    .unwrap();
    let mut cmd = station_cmd(&env, &sim, &[PIN_ENV[0], PIN_ENV[1], "--batch"]);
    cmd.arg(env.path("batch.csv"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = std::fs::read_to_string(env.path("station.err")).unwrap();
    for want in [
        "line 1: unknown column 'extra'",
        "line 3: the username is empty",
        "line 4: the username 'alice' is already on line 2",
        "line 5: the serial '1' is already on line 2",
        "line 5: unknown status 'sometimes'",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(!env.path("report.csv").exists());
    assert!(sim.all_records().is_empty(), "nothing reached the server");
}

/// A user bound to another certificate (22027): skipped by default headless (exit 1, the row
/// unsettled), replaced with --on-bound replace (the old one unbound, journaled).
#[test]
fn a_bound_user_is_skipped_or_replaced() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let old = token(&env, "old", "Old");
    let o = env.enroll(&sim, "alice", &["--json", "--token", "old"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // The old token stays in its reader; only the new one is in the batch.
    let new = token(&env, "new", "New");
    let s = serials(&env);
    std::fs::write(
        env.path("batch.csv"),
        format!("username,serial\nalice,{}\n", s["new"]),
    )
    .unwrap();
    let mut cmd = station_cmd(&env, &sim, &[PIN_ENV[0], PIN_ENV[1], "--batch"]);
    cmd.arg(env.path("batch.csv"));
    let (code, events) = start(cmd).end();
    assert_eq!(code, 1, "{events:#?}");
    let rows = report(&env);
    let row = rows.iter().find(|r| r["token_label"] == "new").unwrap();
    assert_eq!(
        (row["outcome"].as_str(), row["code"].as_str()),
        ("skipped", "22027"),
        "{row:?}"
    );
    assert!(!sim.all_records().iter().any(|r| r["unbind"] == true));

    let mut cmd = station_cmd(
        &env,
        &sim,
        &[PIN_ENV[0], PIN_ENV[1], "--on-bound", "replace", "--batch"],
    );
    cmd.arg(env.path("batch.csv"));
    let (code, events) = start(cmd).end();
    assert_eq!(code, 0, "{events:#?}");
    let rows = report(&env);
    let last = rows
        .iter()
        .rev()
        .find(|r| r["token_label"] == "new")
        .unwrap();
    assert_eq!(last["outcome"], "registered", "{rows:?}");
    assert_eq!(
        sim.all_records()
            .iter()
            .filter(|r| r["unbind"] == true)
            .count(),
        1
    );
    let certs = [("Old", old), ("New", new)].into_iter().collect();
    let regs = verified_registrations(&env, &sim, &certs);
    assert!(regs.iter().any(|(u, s)| u == "alice" && s.contains("New")));
    let journal = std::fs::read_to_string(env.path("state/tokenroll/journal.jsonl")).unwrap();
    assert!(journal.contains("\"action\":\"unbind\""), "{journal}");
    assert!(journal.contains("\"run\":\"station-"), "{journal}");
}
