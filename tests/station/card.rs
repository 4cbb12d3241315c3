//! A token pulled out before its lane finishes, on a real smart-card stack (a private pcscd, the
//! vpcd reader, a software OpenPGP card, OpenSC): while its holder is at the PIN dialog, and
//! again in the middle of the signature. Neither is reported; the row waits for the card, which
//! registers once it stays in.

use super::*;

#[test]
fn a_card_pulled_mid_lane_is_not_reported_and_its_row_waits_for_it() {
    let mut env = TestEnv::new();
    let card = VCard::personalized(&env, "Carol Card", "carol@example.com");
    card.remove();
    let sim = env.simulator(&[]);
    let gate = env.path("gate");
    // The first dialog waits (the card is pulled meanwhile); the next two give the PIN.
    pins(
        &env,
        &[&format!("WAIT {}", gate.display()), CARD_PIN, CARD_PIN],
    );
    std::fs::write(env.path("batch.csv"), "username\ncarol@example.com\n").unwrap();
    let mut cmd = station_cmd(&env, &sim, &["--batch"]);
    cmd.arg(env.path("batch.csv"));
    card.wire(&mut cmd);
    let station = start(cmd);
    let wait = |what: &str, n: usize| {
        let t = Instant::now();
        while station.named(what).len() < n {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no {what} #{n}: {:#?}",
                station.events.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    card.insert();
    wait("waiting_pin", 1);
    card.remove();
    wait("removed", 1);
    std::fs::write(&gate, "").unwrap();
    // Put back, and pulled as the signature reaches it.
    card.pull_mid_signature();
    card.insert();
    wait("removed", 2);
    card.insert();
    let (code, events) = station.end();
    assert_eq!(code, 0, "{events:#?}");
    let rows = report(&env);
    assert_eq!(rows.len(), 1, "only the enrollment that finished: {rows:?}");
    assert_eq!(rows[0]["outcome"], "registered");
    assert_eq!(rows[0]["username"], "carol@example.com");
    let done = events.iter().position(|e| e["event"] == "done").unwrap();
    let removed: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "removed")
        .map(|(i, _)| i)
        .collect();
    assert!(removed.len() == 2 && removed[1] < done, "{events:#?}");
    assert_eq!(
        registrations(&sim).len(),
        1,
        "nothing was sent for the pulled card"
    );
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(registrations(&sim)[0]["signature"].as_str().unwrap())
        .unwrap();
    let p7 = env.path("card.p7");
    std::fs::write(&p7, der).unwrap();
    openssl_verify(&p7, &card.ca());
}
