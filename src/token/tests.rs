use super::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::slot::Slot;
use std::str::FromStr;
use std::time::SystemTime;
use uri::Pkcs11Uri;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::Certificate;

pub(crate) fn software_cert(cn: &str, key: &p256::ecdsa::SigningKey, days: i64) -> Certificate {
    let spki = spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    let validity = if days >= 0 {
        x509_cert::time::Validity::from_now(std::time::Duration::from_secs(
            days as u64 * 86400 + 60,
        ))
        .unwrap()
    } else {
        let past = |d: u64| {
            x509_cert::time::Time::try_from(
                SystemTime::now() - std::time::Duration::from_secs(d * 86400),
            )
            .unwrap()
        };
        x509_cert::time::Validity {
            not_before: past(10),
            not_after: past((-days) as u64),
        }
    };
    CertificateBuilder::new(
        Profile::Manual { issuer: None },
        x509_cert::serial_number::SerialNumber::new(&[1]).unwrap(),
        validity,
        x509_cert::name::Name::from_str(&format!("CN={cn}")).unwrap(),
        spki,
        key,
    )
    .unwrap()
    .build::<p256::ecdsa::DerSignature>()
    .unwrap()
}

pub(crate) fn token(label: &str) -> TokenDesc {
    TokenDesc {
        label: label.into(),
        serial: format!("{label}-serial"),
        manufacturer: "M".into(),
        model: "X".into(),
        slot: Slot::try_from(1u64).unwrap(),
        slot_description: String::new(),
        pin_pad: false,
        login_required: true,
        pin_count_low: false,
        pin_final_try: false,
        pin_locked: false,
        pin_to_be_changed: false,
    }
}

fn pair(t: &TokenDesc, id: u8, days: i64) -> SigningPair {
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let cert = software_cert(&format!("{}-{id}", t.label), &key, days);
    SigningPair {
        token: t.clone(),
        id: vec![id],
        object_label: format!("key{id}"),
        validity: validity_at(&cert, SystemTime::now()),
        cert_der: der::Encode::to_der(&cert).unwrap(),
        cert,
        kind: KeyKind::Ec(Curve::P256),
        signature_key: false,
    }
}

fn by_uri(s: &str) -> Selector {
    Selector {
        token_label: None,
        uri: Some(Pkcs11Uri::parse(s).unwrap()),
        ..Default::default()
    }
}

#[test]
fn one_valid_pair_is_chosen_without_asking() {
    let a = token("alice");
    let got = choose_pair(
        std::slice::from_ref(&a),
        vec![pair(&a, 1, 30), pair(&a, 2, -1)],
        &Selector::default(),
    )
    .unwrap();
    assert_eq!(got.id, vec![1]);
}

#[test]
fn several_valid_pairs_are_ambiguous_and_listed() {
    let a = token("alice");
    let err = choose_pair(
        std::slice::from_ref(&a),
        vec![pair(&a, 1, 30), pair(&a, 2, 30)],
        &Selector::default(),
    )
    .unwrap_err();
    let TokenError::Ambiguous(list) = err else {
        panic!("{err}")
    };
    assert_eq!(list.len(), 2);
    assert!(list[0].contains("pkcs11:") && list[0].contains("id=%01"));
    let got = choose_pair(
        std::slice::from_ref(&a),
        vec![pair(&a, 1, 30), pair(&a, 2, 30)],
        &by_uri("pkcs11:id=%02"),
    )
    .unwrap();
    assert_eq!(got.id, vec![2]);
}

#[test]
fn the_admins_own_pair_is_never_chosen_for_enrollment() {
    let (a, admin) = (token("alice"), token("admin"));
    let tokens = [a.clone(), admin.clone()];
    let not = Some(Pkcs11Uri::parse("pkcs11:token=admin;id=%07").unwrap());
    let sel = Selector {
        not: not.clone(),
        ..Default::default()
    };
    // Without the exclusion these two would be ambiguous.
    let got = choose_pair(&tokens, vec![pair(&a, 1, 30), pair(&admin, 7, 30)], &sel).unwrap();
    assert_eq!(got.token.label, "alice");
    let err = choose_pair(&tokens, vec![pair(&admin, 7, 30)], &sel).unwrap_err();
    assert!(
        matches!(err, TokenError::NoSigningPair(ref m) if m.contains("admin's own pair")),
        "{err}"
    );
}

#[test]
fn only_expired_pairs_stop_with_the_reason() {
    let a = token("alice");
    let err = choose_pair(
        std::slice::from_ref(&a),
        vec![pair(&a, 1, -1)],
        &Selector::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, TokenError::CertificateNotValid(ref m) if m.contains("expired")),
        "{err}"
    );
}

#[test]
fn token_attributes_narrow_the_choice() {
    let (a, b) = (token("alice"), token("bob"));
    let pairs = || vec![pair(&a, 1, 30), pair(&b, 1, 30)];
    let tokens = [a.clone(), b.clone()];
    assert_eq!(
        choose_pair(&tokens, pairs(), &by_uri("pkcs11:serial=bob-serial"))
            .unwrap()
            .token
            .label,
        "bob"
    );
    let sel = Selector {
        token_label: Some("alice".into()),
        uri: None,
        ..Default::default()
    };
    assert_eq!(
        choose_pair(&tokens, pairs(), &sel).unwrap().token.label,
        "alice"
    );
    assert!(matches!(
        choose_pair(&tokens, pairs(), &by_uri("pkcs11:token=carol")),
        Err(TokenError::NoToken(_))
    ));
    assert!(matches!(
        choose_pair(&tokens, pairs(), &by_uri("pkcs11:token=bob;id=%09")),
        Err(TokenError::NoSigningPair(_))
    ));
}

#[test]
fn ckr_codes_map_to_actions() {
    use cryptoki::context::Function;
    let e = |rv| map_ck("x", CkError::Pkcs11(rv, Function::Login));
    assert!(matches!(
        e(RvError::PinIncorrect),
        TokenError::PinIncorrect { .. }
    ));
    assert!(matches!(e(RvError::PinLocked), TokenError::PinLocked));
    assert!(matches!(
        e(RvError::DeviceRemoved),
        TokenError::TokenRemoved
    ));
    assert!(matches!(
        e(RvError::TokenNotPresent),
        TokenError::TokenRemoved
    ));
    assert!(matches!(
        e(RvError::FunctionCanceled),
        TokenError::PinCancelled
    ));
    assert!(matches!(
        e(RvError::KeyFunctionNotPermitted),
        TokenError::KeyNotPermitted(_)
    ));
    assert!(matches!(
        e(RvError::GeneralError),
        TokenError::Device { .. }
    ));
    let msg = TokenError::PinIncorrect {
        count_low: false,
        final_try: true,
    }
    .to_string();
    assert!(msg.contains("LOCK"), "{msg}");
}

/// OpenSC shows an OpenPGP card as two tokens with one serial and copies its certificate to
/// every key slot; only the copy whose public key is a signature key is kept.
#[test]
fn a_card_showing_one_certificate_on_two_tokens_offers_it_once() {
    let card = |label: &str| TokenDesc {
        serial: "ffb85cb07b84".into(),
        ..token(label)
    };
    let user = card("OpenPGP card (User PIN)");
    let sig = card("OpenPGP card (User PIN (sig))");
    let aut = pair(&user, 3, 30);
    let dec = SigningPair {
        id: vec![2],
        ..aut.clone()
    };
    let signing = SigningPair {
        token: sig.clone(),
        id: vec![1],
        signature_key: true,
        ..aut.clone()
    };
    let merged = merge_card_copies(vec![aut.clone(), dec, signing]);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].token.label, sig.label);
    assert_eq!(merged[0].id, vec![1]);

    // Another card with an identical certificate is a different card: both stay.
    let other = SigningPair {
        token: token("other"),
        ..aut.clone()
    };
    assert_eq!(merge_card_copies(vec![aut.clone(), other]).len(), 2);
    // Two different certificates on one card both stay.
    let second = pair(&user, 4, 30);
    assert_eq!(merge_card_copies(vec![aut.clone(), second]).len(), 2);
}

/// An impostor that copies a card's label, serial, manufacturer, model and certificate into
/// another reader is not that card: its pair is not merged with the card's, and a selector for
/// the card's reader never picks it (so it never receives the PIN typed for the card).
#[test]
fn an_impostor_with_a_copied_serial_and_certificate_is_its_own_token() {
    let in_reader = |reader: &str| TokenDesc {
        slot_description: reader.into(),
        ..token("card")
    };
    let real = in_reader("Reader A");
    let impostor = in_reader("Reader B");
    assert!(!real.same_card(&impostor));
    assert!(real.same_card(&in_reader("Reader A")));
    let real_pair = pair(&real, 1, 30);
    let fake_pair = SigningPair {
        token: impostor.clone(),
        signature_key: true,
        ..real_pair.clone()
    };
    let both = merge_card_copies(vec![real_pair.clone(), fake_pair.clone()]);
    assert_eq!(
        both.len(),
        2,
        "the impostor's copy is not merged into the card"
    );
    let sel = Selector {
        token_label: None,
        uri: Some(Pkcs11Uri::parse("pkcs11:token=card;serial=card-serial").unwrap()),
        reader: Some("Reader A".into()),
        ..Default::default()
    };
    let chosen = choose_pair(&[real.clone(), impostor.clone()], both, &sel).unwrap();
    assert_eq!(chosen.token.slot_description, "Reader A");
}

/// Every CKR_* a token returns in practice becomes an error that says what to do.
#[test]
fn ckr_codes_map_to_errors_with_an_action() {
    use cryptoki::context::Function;
    let map = |rv| map_ck("signing", CkError::Pkcs11(rv, Function::Sign));
    for (rv, expect) in [
        (RvError::PinIncorrect, "wrong PIN"),
        (RvError::PinLocked, "unblock"),
        (RvError::PinExpired, "change it"),
        (RvError::PinLenRange, "invalid length"),
        (RvError::FunctionCanceled, "cancelled"),
        (RvError::DeviceRemoved, "insert it again"),
        (RvError::TokenNotPresent, "insert it again"),
        (RvError::SessionHandleInvalid, "insert it again"),
        (RvError::ObjectHandleInvalid, "insert it again"),
        (RvError::UserNotLoggedIn, "enter the PIN again"),
        (RvError::UserPinNotInitialized, "--init-pin"),
        (RvError::DeviceMemory, "out of memory"),
        (RvError::KeyFunctionNotPermitted, "CKA_SIGN"),
        (RvError::MechanismInvalid, "tokenroll signs with"),
        (RvError::GeneralError, "re-insert the token"),
        (RvError::DeviceError, "re-insert the token"),
    ] {
        let text = map(rv).to_string();
        assert!(text.contains(expect), "{rv:?}: {text}");
    }
}

/// A certificate whose RSA modulus is zero (or empty) is an unsupported key, not a panic.
#[test]
fn a_nonsense_rsa_modulus_is_an_error() {
    use const_oid::db::rfc5912;
    // SEQUENCE { INTEGER 0, INTEGER 65537 }
    let pkcs1 = [0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x03, 0x01, 0x00, 0x01];
    let spki = spki::SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: rfc5912::RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        },
        subject_public_key: der::asn1::BitString::from_bytes(&pkcs1).unwrap(),
    };
    assert!(matches!(
        KeyKind::from_spki(&spki),
        Err(TokenError::UnsupportedKey(_))
    ));
}
