//! PIN sources for the command line: an environment variable, stdin, or a no-echo terminal prompt.

use crate::enroll::{PairSummary, PinPrompt};
use crate::secret::Pin;
use crate::token::TokenError;
use std::io::BufRead;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// `--pin-env`: the variable's name, and its value as taken out of the environment at start.
    Env {
        var: String,
        pin: Option<Pin>,
    },
    Stdin,
    Terminal,
}

pub struct CliPin {
    pub source: PinSource,
    asked: bool,
}

impl CliPin {
    pub fn new(source: PinSource) -> Self {
        Self {
            source,
            asked: false,
        }
    }
}

impl PinPrompt for CliPin {
    fn pin(&mut self, pair: &PairSummary) -> Result<Pin, TokenError> {
        // A PIN source gives one PIN; asking twice would resend a PIN already known to be wrong.
        if std::mem::replace(&mut self.asked, true) {
            return Err(TokenError::PinSource(
                "the PIN was already used once".into(),
            ));
        }
        let pin = match &mut self.source {
            PinSource::Env { var, pin } => pin.take().ok_or_else(|| {
                TokenError::PinSource(format!("the variable {var} named by --pin-env is not set"))
            })?,
            PinSource::Stdin => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| TokenError::PinSource(format!("reading stdin: {e}")))?;
                Pin::from_line(line)
            }
            PinSource::Terminal => {
                let prompt = format!(
                    "PIN for token '{}' ({}){}: ",
                    crate::text::plain(&pair.token_label),
                    crate::text::plain(&pair.subject),
                    if pair.pin_final_try {
                        " — FINAL TRY before the PIN locks"
                    } else if pair.pin_count_low {
                        " — few tries left"
                    } else {
                        ""
                    }
                );
                let text = rpassword::prompt_password(prompt).map_err(|e| {
                    TokenError::PinSource(format!(
                        "no terminal to ask for the PIN ({e}); use --pin-env VAR or --pin-stdin"
                    ))
                })?;
                Pin::new(text)
            }
        };
        if pin.is_empty() {
            return Err(TokenError::PinCancelled);
        }
        Ok(pin)
    }
}
