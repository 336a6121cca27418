//! How commands print: human lines on stdout, or exactly one JSON document with `--json`.
//! Progress and logs go to stderr, so stdout stays parseable (and `dump` stays binary-clean).

use serde::Serialize;

use super::CliError;

/// The output mode of one command run.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Emit JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON (in JSON mode) or `text()` (otherwise).
    pub fn emit<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        if self.json {
            let s = serde_json::to_string(value).map_err(|e| CliError {
                category: "Internal",
                message: format!("serialising output: {e}"),
            })?;
            println!("{s}");
        } else {
            let t = text();
            if !t.is_empty() {
                println!("{}", t.trim_end());
            }
        }
        Ok(())
    }
}

/// Bytes as a short human string.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}
