//! Signed statements: what a signature says and how it is stored.
//!
//! A signature never covers JSON (whose bytes depend on the serializer): it covers a
//! *payload*, a short text of `key: value` lines in a fixed order, which travels inside
//! the signature file next to the signature itself ([`Envelope`]). A verifier checks the
//! signature over the payload's exact bytes, then reads the payload and compares each
//! field with the evidence (a report's SHA-256, its run, its place in the chain). The
//! payload is readable by people and reproducible without Lifeboat:
//!
//! ```text
//! jq -j .payload r.json.sig > payload; jq -r .signature r.json.sig | base64 -d > sig
//! openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in payload -sigfile sig
//! sha256sum r.json        # equals the payload's reportSha256
//! ```
//!
//! A report's signature file is `<report>.json.sig`; an anchor is an envelope too
//! (`super::anchor`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Error;
use super::keys::{ALGORITHM, PublicKey, SigningKey};

/// `format` of every envelope, and the first line of every payload.
pub const SIGNATURE_FORMAT: &str = "lifeboat.dev/evidence-signature/v1";

/// The key of a report's signature file.
pub fn signature_key(report_key: &str) -> String {
    format!("{report_key}.sig")
}

/// A signed payload, as stored (`<report>.json.sig`, an anchor ConfigMap's data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// [`SIGNATURE_FORMAT`].
    pub format: String,
    /// `Ed25519`.
    pub algorithm: String,
    /// The signer's key ID (`super::keys`).
    pub key_id: String,
    /// The signed text.
    pub payload: String,
    /// Base64 of the signature over the payload's UTF-8 bytes.
    pub signature: String,
}

/// Why an envelope does not open. Bounded: each is one attack or one accident.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    #[error("the signature file is not readable: {0}")]
    Unreadable(String),
    #[error("the signature uses {0:?}, not {ALGORITHM} ({SIGNATURE_FORMAT})")]
    UnknownAlgorithm(String),
    #[error("signed by key {0}, which is not the installation's (trusted: {1})")]
    UntrustedKey(String, String),
    #[error("the signature does not verify with key {0}: the payload or the signature was changed")]
    BadSignature(String),
}

impl Envelope {
    /// Signs `payload` with `key`.
    pub fn sign(key: &SigningKey, payload: String) -> Envelope {
        let signature = STANDARD.encode(key.sign(payload.as_bytes()));
        Envelope {
            format: SIGNATURE_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: key.public().id().to_string(),
            payload,
            signature,
        }
    }

    /// The stored bytes (pretty JSON, final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("an envelope always serializes");
        v.push(b'\n');
        v
    }

    /// Reads stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, SignatureProblem> {
        serde_json::from_slice(bytes).map_err(|e| SignatureProblem::Unreadable(e.to_string()))
    }

    /// The payload, if the signature verifies with one of `trusted` (matched by key ID).
    pub fn open(&self, trusted: &[PublicKey]) -> Result<&str, SignatureProblem> {
        if self.format != SIGNATURE_FORMAT || self.algorithm != ALGORITHM {
            return Err(SignatureProblem::UnknownAlgorithm(format!(
                "{} {}",
                self.format, self.algorithm
            )));
        }
        let Some(key) = trusted.iter().find(|k| k.id() == self.key_id) else {
            return Err(SignatureProblem::UntrustedKey(
                self.key_id.clone(),
                trusted
                    .iter()
                    .map(|k| k.id().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        };
        let sig = STANDARD
            .decode(self.signature.trim())
            .map_err(|e| SignatureProblem::Unreadable(format!("signature is not base64: {e}")))?;
        if key.verify(self.payload.as_bytes(), &sig) {
            Ok(&self.payload)
        } else {
            Err(SignatureProblem::BadSignature(self.key_id.clone()))
        }
    }
}

/// The `key: value` lines of a payload, in order. Values are single lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// A payload of `kind` (`report`, `anchor`).
    pub fn new(kind: &str) -> Fields {
        Fields(vec![("kind".into(), kind.into())])
    }

    /// Appends a field; an absent value is written empty.
    pub fn with(mut self, key: &str, value: Option<impl ToString>) -> Fields {
        self.0
            .push((key.into(), value.map(|v| v.to_string()).unwrap_or_default()));
        self
    }

    /// The payload text. Fails when a value has a line break (names and digests never
    /// do; a field that could would make two payloads read alike).
    pub fn render(&self) -> Result<String, Error> {
        let mut out = format!("{SIGNATURE_FORMAT}\n");
        for (k, v) in &self.0 {
            if v.contains(['\n', '\r']) {
                return Err(Error::Payload(format!("field {k} has a line break")));
            }
            out.push_str(&format!("{k}: {v}\n"));
        }
        Ok(out)
    }

    /// Reads a payload.
    pub fn parse(text: &str) -> Result<Fields, Error> {
        let mut lines = text.lines();
        if lines.next() != Some(SIGNATURE_FORMAT) {
            return Err(Error::Payload(format!(
                "the payload does not start with {SIGNATURE_FORMAT}"
            )));
        }
        let mut out = Vec::new();
        for l in lines {
            let (k, v) = l
                .split_once(": ")
                .or_else(|| l.strip_suffix(':').map(|k| (k, "")))
                .ok_or_else(|| Error::Payload(format!("line {l:?} is not `key: value`")))?;
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Fields(out))
    }

    /// A field's value; `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A required field.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::Payload(format!("the payload has no {key}")))
    }

    /// The payload's kind.
    pub fn kind(&self) -> Option<&str> {
        self.get("kind")
    }

    /// An optional timestamp field.
    pub fn time(&self, key: &str) -> Result<Option<Timestamp>, Error> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|e| Error::Payload(format!("{key} {v:?} is not a time: {e}")))
            })
            .transpose()
    }

    /// An optional number field.
    pub fn number(&self, key: &str) -> Result<Option<u64>, Error> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| Error::Payload(format!("{key} {v:?} is not a number")))
            })
            .transpose()
    }
}

/// What the signature of one report says: the report's digest and its identity, so a
/// signature cannot be moved to another report, run, drill or place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportStatement {
    pub namespace: String,
    pub drill: String,
    pub run: String,
    /// The DrillRun's UID (a report planted before its run cannot know it).
    pub run_uid: Option<String>,
    /// The report's place in the drill's chain, from 1.
    pub sequence: Option<u64>,
    /// When the run started (the report's key starts with it).
    pub start_time: Option<Timestamp>,
    /// SHA-256 of the report's exact bytes.
    pub report_sha256: String,
    /// The chain link, as in the report.
    pub previous_sha256: Option<String>,
    /// When the controller signed.
    pub signed_at: Timestamp,
}

impl ReportStatement {
    /// The payload text.
    pub fn payload(&self) -> Result<String, Error> {
        Fields::new("report")
            .with("namespace", Some(&self.namespace))
            .with("drill", Some(&self.drill))
            .with("run", Some(&self.run))
            .with("runUid", self.run_uid.as_ref())
            .with("sequence", self.sequence)
            .with("startTime", self.start_time)
            .with("reportSha256", Some(&self.report_sha256))
            .with("previousSha256", self.previous_sha256.as_ref())
            .with("signedAt", Some(self.signed_at))
            .render()
    }

    /// Reads a payload.
    pub fn parse(payload: &str) -> Result<ReportStatement, Error> {
        let f = Fields::parse(payload)?;
        if f.kind() != Some("report") {
            return Err(Error::Payload(format!(
                "a {:?} payload, not a report's",
                f.kind().unwrap_or("")
            )));
        }
        Ok(ReportStatement {
            namespace: f.require("namespace")?.into(),
            drill: f.require("drill")?.into(),
            run: f.require("run")?.into(),
            run_uid: f.get("runUid").map(str::to_string),
            sequence: f.number("sequence")?,
            start_time: f.time("startTime")?,
            report_sha256: f.require("reportSha256")?.into(),
            previous_sha256: f.get("previousSha256").map(str::to_string),
            signed_at: f
                .time("signedAt")?
                .ok_or_else(|| Error::Payload("the payload has no signedAt".into()))?,
        })
    }

    /// Signs this statement.
    pub fn sign(&self, key: &SigningKey) -> Result<Envelope, Error> {
        Ok(Envelope::sign(key, self.payload()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> ReportStatement {
        ReportStatement {
            namespace: "shop".into(),
            drill: "orders".into(),
            run: "orders-202611221500".into(),
            run_uid: Some("0b1c".into()),
            sequence: Some(3),
            start_time: Some("2026-11-22T15:00:00Z".parse().unwrap()),
            report_sha256: "ab".repeat(32),
            previous_sha256: None,
            signed_at: "2026-11-22T15:02:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn the_payload_is_stable_readable_text() {
        assert_eq!(
            statement().payload().unwrap(),
            format!(
                "lifeboat.dev/evidence-signature/v1\nkind: report\nnamespace: shop\ndrill: orders\n\
                 run: orders-202611221500\nrunUid: 0b1c\nsequence: 3\nstartTime: 2026-11-22T15:00:00Z\n\
                 reportSha256: {}\npreviousSha256: \nsignedAt: 2026-11-22T15:02:00Z\n",
                "ab".repeat(32)
            )
        );
        let back = ReportStatement::parse(&statement().payload().unwrap()).unwrap();
        assert_eq!(back, statement());
    }

    #[test]
    fn envelopes_open_only_with_the_trusted_key_and_untouched_payloads() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let env = statement().sign(&key).unwrap();
        let bytes = env.to_bytes();
        let back = Envelope::from_bytes(&bytes).unwrap();
        let trusted = [key.public().clone()];
        assert_eq!(back.open(&trusted).unwrap(), env.payload);

        let mut changed = back.clone();
        changed.payload = changed.payload.replace("sequence: 3", "sequence: 4");
        assert_eq!(
            changed.open(&trusted),
            Err(SignatureProblem::BadSignature(key.public().id().into()))
        );
        assert!(matches!(
            back.open(&[other.public().clone()]),
            Err(SignatureProblem::UntrustedKey(..))
        ));
        // Signed by another key that claims the trusted key's ID.
        let mut forged = statement().sign(&other).unwrap();
        forged.key_id = key.public().id().into();
        assert!(matches!(
            forged.open(&trusted),
            Err(SignatureProblem::BadSignature(_))
        ));
        let mut rsa = back.clone();
        rsa.algorithm = "RSA".into();
        assert!(matches!(
            rsa.open(&trusted),
            Err(SignatureProblem::UnknownAlgorithm(_))
        ));
        assert!(matches!(
            Envelope::from_bytes(b"{"),
            Err(SignatureProblem::Unreadable(_))
        ));
    }

    #[test]
    fn payloads_refuse_line_breaks_and_foreign_kinds() {
        let mut s = statement();
        s.run = "a\nsequence: 9".into();
        assert!(s.payload().is_err());
        let anchor = Fields::new("anchor").with("x", Some(1)).render().unwrap();
        assert!(ReportStatement::parse(&anchor).is_err());
        assert!(ReportStatement::parse("hello\nkind: report\n").is_err());
    }
}
