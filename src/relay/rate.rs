//! The relay's rate limits: `"30/min"` per client address, per username and per certificate,
//! counted in fixed windows in the shared store (so replicas count together).
//!
//! Owns: the limit's syntax, the window a moment falls in and the `Retry-After` of a refusal.
//! Does not own: the counters (see `store`) or when a limit is checked (see `service`).

/// At most `count` requests per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window_ms: i64,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{text}' is not a rate: give COUNT/UNIT, e.g. \"30/min\" (units s, min, hour, \
                 day; COUNT at least 1)"
            )
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let window_ms = match unit.trim() {
            "s" | "sec" | "second" => 1_000,
            "m" | "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            "d" | "day" => 86_400_000,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Rate { count, window_ms })
    }
}

impl Rate {
    /// The start of the window `now_ms` falls in.
    pub fn window(&self, now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(self.window_ms)
    }

    /// Whole seconds until the window of `now_ms` ends (at least 1): the `Retry-After`.
    pub fn retry_after_secs(&self, now_ms: i64) -> u64 {
        let left = self.window(now_ms) + self.window_ms - now_ms;
        u64::try_from((left + 999) / 1000).unwrap_or(1).max(1)
    }

    /// Whether the `hits`-th request in a window is over the limit.
    pub fn exceeded_by(&self, hits: i64) -> bool {
        hits > i64::from(self.count)
    }
}

/// The three limits.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    pub address: Rate,
    pub user: Rate,
    pub certificate: Rate,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            address: Rate {
                count: 60,
                window_ms: 60_000,
            },
            user: Rate {
                count: 10,
                window_ms: 60_000,
            },
            certificate: Rate {
                count: 10,
                window_ms: 60_000,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_windows_are_fixed() {
        let r: Rate = "30/min".parse().unwrap();
        assert_eq!(
            r,
            Rate {
                count: 30,
                window_ms: 60_000
            }
        );
        assert_eq!(" 5 / s ".parse::<Rate>().unwrap().window_ms, 1000);
        assert_eq!("2/hour".parse::<Rate>().unwrap().window_ms, 3_600_000);
        for bad in ["", "30", "0/min", "-1/min", "30/fortnight", "x/min"] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.contains("30/min"), "{e}");
        }
        assert_eq!(r.window(125_000), 120_000);
        assert_eq!(r.retry_after_secs(125_000), 55);
        assert_eq!(r.retry_after_secs(179_999), 1);
        assert!(!r.exceeded_by(30) && r.exceeded_by(31));
    }
}
