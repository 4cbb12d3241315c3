//! `tokenroll verify`: decode and verify a PKCS#7 SignedData, and optionally its signer's chain.
//!
//! Owns: reading the file in its three encodings and the output. Does not own: CMS (see `cms`)
//! or path validation (see `chain`).

use super::args::VerifyArgs;
use super::exit;
use crate::text::plain;

/// Accepts DER, PEM ("-----BEGIN PKCS7-----" or "CMS") or bare base64.
fn decode_pkcs7_file(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "neither DER nor text".to_string())?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("neither DER nor base64: {e}"))
}

pub fn verify_cmd(args: VerifyArgs) -> i32 {
    let json = args.output.json.unwrap_or(false);
    let result = (|| -> Result<(crate::cms::Verified, bool), String> {
        let bytes = std::fs::read(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
        let der = decode_pkcs7_file(&bytes)?;
        let v = crate::cms::verify(&der).map_err(|e| e.to_string())?;
        let mut chained = false;
        if let Some(t) = &args.trust {
            let pem = std::fs::read(t).map_err(|e| format!("cannot read {}: {e}", t.display()))?;
            let trust = crate::cms::certs_from_pem(&pem).map_err(|e| e.to_string())?;
            crate::chain::verify_chain(
                &v.signer,
                &v.certificates,
                &trust,
                std::time::SystemTime::now(),
            )
            .map_err(|e| e.to_string())?;
            chained = true;
        }
        Ok((v, chained))
    })();
    match result {
        Ok((v, chained)) => {
            let content =
                String::from_utf8(v.content.clone()).unwrap_or_else(|_| hex::encode(&v.content));
            let signer = v.signer.tbs_certificate.subject.to_string();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "signer": signer, "issuer": v.signer.tbs_certificate.issuer.to_string(),
                        "digest": v.digest.name(), "content": content, "chain_verified": chained})
                );
            } else {
                println!(
                    "valid: signed by {} with {}",
                    plain(&signer),
                    v.digest.label()
                );
                println!("content: {}", plain(&content));
                if chained {
                    println!("chain: trusted");
                }
            }
            exit::OK
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"valid": false, "error": e}));
            } else {
                eprintln!("not valid: {}", crate::text::plain_lines(&e));
            }
            exit::FAILURE
        }
    }
}
