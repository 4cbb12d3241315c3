//! `tokenroll provision` (hidden): test tooling that puts a key pair and a self-signed
//! certificate on a SoftHSM2 token.
//!
//! Owns: the command's flags. Does not own: provisioning (see `token::provision`).

use super::args::ProvisionArgs;
use super::exit;

pub fn provision_cmd(args: ProvisionArgs) -> i32 {
    use crate::secret::Pin;
    use crate::token::{provision, Curve, KeyKind};
    let run = || -> Result<(), String> {
        let kind = match args.key_type.as_str() {
            "rsa2048" => KeyKind::Rsa { bits: 2048 },
            "rsa3072" => KeyKind::Rsa { bits: 3072 },
            "rsa4096" => KeyKind::Rsa { bits: 4096 },
            "p256" => KeyKind::Ec(Curve::P256),
            "p384" => KeyKind::Ec(Curve::P384),
            k => return Err(format!("unknown --key-type {k}")),
        };
        let pin = Pin::new(
            std::env::var(&args.pin_env).map_err(|_| format!("{} is not set", args.pin_env))?,
        );
        let module =
            crate::token::Module::load(args.module.module.as_deref()).map_err(|e| e.to_string())?;
        let token = if args.init {
            let so = Pin::new(
                std::env::var(&args.so_pin_env)
                    .map_err(|_| format!("{} is not set", args.so_pin_env))?,
            );
            provision::init_token(&module, &args.label, &so, &pin).map_err(|e| e.to_string())?
        } else {
            module
                .tokens()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|t| t.label == args.label)
                .ok_or_else(|| format!("no token labelled {}", args.label))?
        };
        let id = hex::decode(&args.id).map_err(|e| format!("--id: {e}"))?;
        let mut spec = provision::KeySpec::new(kind, 0, &args.subject);
        spec.label = format!("key{}", args.id);
        spec.id = id;
        spec.email = args.email.clone();
        spec.signing_usage = !args.no_sign_usage;
        spec.always_authenticate = args.always_authenticate;
        if let (Some(c), Some(k)) = (&args.issuer_cert, &args.issuer_key) {
            use p256::pkcs8::DecodePrivateKey;
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
            };
            let cert = crate::cms::certs_from_pem(read(c)?.as_bytes())
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .ok_or("--issuer-cert holds no certificate")?;
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&read(k)?)
                .map_err(|e| format!("--issuer-key: {e}"))?;
            spec.issuer = Some(provision::Issuer { cert, key });
        }
        if args.expired {
            spec.not_before = -2 * 86400;
            spec.not_after = -86400;
        }
        if args.not_yet_valid {
            spec.not_before = 86400;
            spec.not_after = 2 * 86400;
        }
        let der = provision::add_key(&module, &token, &pin, &spec).map_err(|e| e.to_string())?;
        if let Some(p) = &args.cert_out {
            use der::Decode;
            use der::EncodePem;
            let pem = x509_cert::Certificate::from_der(&der)
                .and_then(|c| c.to_pem(der::pem::LineEnding::LF))
                .map_err(|e| e.to_string())?;
            std::fs::write(p, pem).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("tokenroll provision: {e}");
            exit::FAILURE
        }
    }
}
