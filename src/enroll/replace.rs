//! `enroll --replace`: after a registration met 22027 for another certificate (and the person
//! confirmed), unbind the user's PKI token — journaled as its own intent and outcome before and
//! after it is sent — and register the same PKCS#7 again.
//!
//! Owns: the order of a replacement. Does not own: asking the person (the face does, before
//! calling this) or the registration itself (see `register`).

use super::{
    register, EnrollError, OutcomeKind, PairSummary, Registrar, Registration, Report, Step,
};
use crate::api::login::BoundCert;
use crate::digest::DigestAlg;

/// Unbinds `user`'s token (bound to `other`) and registers `pkcs7` again. If the second
/// registration fails after the unbinding, the message says loudly that the user now has no
/// token bound.
#[allow(clippy::too_many_arguments)]
pub async fn replace(
    registrar: &impl Registrar,
    reg: &Registration<'_>,
    user: &str,
    other: &BoundCert,
    pair: &PairSummary,
    pkcs7: &[u8],
    digest: DigestAlg,
    on: &mut (dyn FnMut(Step) + Send),
) -> Result<Report, EnrollError> {
    use crate::journal::Intent;
    let secrets = registrar.secrets(on).await?;
    let id = crate::journal::new_id();
    if let Some(j) = reg.journal {
        j.intent(&Intent {
            id: id.clone(),
            action: "unbind".into(),
            time: crate::journal::now(),
            server: reg.url_for_display.clone(),
            admin: reg.admin.to_string(),
            user: user.to_string(),
            token_label: String::new(),
            token_serial: String::new(),
            certificate_sha256: String::new(),
            certificate_subject: other.subject.clone(),
            certificate_sha1: other.sha1.clone(),
            certificate_serial: other.serial.clone(),
            certificate_issuer: other.issuer.clone(),
            algorithm: String::new(),
            status: String::new(),
            via: None,
            request_sha256: None,
            run: reg.run.clone(),
        })?;
    }
    let answer = registrar.unbind(reg.admin, user, &secrets).await;
    let (state, code, message) = match &answer {
        Ok(a) if a.code == crate::api::CODE_SUCCESS => (
            "unbound",
            Some(a.code),
            format!(
                "{user}'s token ({}, serial {}) was unbound",
                other.subject, other.serial
            ),
        ),
        Ok(a) => (
            "rejected",
            Some(a.code),
            format!("the unbinding was refused: {}", a.explain()),
        ),
        Err(e) => ("failed", None, e.to_string()),
    };
    crate::journal::record_outcome(reg.journal, &id, state, code, &message, 1);
    match answer {
        Ok(a) if a.code == crate::api::CODE_SUCCESS => {}
        Ok(a) => {
            let mut r = super::failure_report(
                &EnrollError::Usage(message.clone()),
                Some(pair),
                Some(user),
                Some(reg),
                digest,
            );
            r.outcome = OutcomeKind::Rejected;
            r.code = Some(a.code);
            r.step = Some("unbind");
            return Ok(r);
        }
        Err(e) => return Err(e.into()),
    }
    let signer = super::Signer::from(pair);
    let mut r = register(registrar, reg, user, &signer, pkcs7, digest, on).await?;
    // Not a plain registration: it followed an unbinding.
    r.step = Some("unbind");
    if r.outcome != OutcomeKind::Registered {
        r.message = format!(
            "{} — AND {user} NOW HAS NO TOKEN BOUND: the old one ({}, serial {}) was unbound \
             before this registration failed; enroll again, or restore the old token in CENTAGATE",
            r.message, other.subject, other.serial
        );
    }
    Ok(r)
}
