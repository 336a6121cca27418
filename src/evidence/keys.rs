//! The installation's evidence key: an Ed25519 key pair (ring), its stable key ID, and the
//! two text forms it travels in: PKCS#8 PEM (`PRIVATE KEY`, the Secret in the controller's
//! namespace) and SubjectPublicKeyInfo PEM (`PUBLIC KEY`, the published ConfigMap, the
//! export bundle, `--public-key FILE`). Both PEM forms are what OpenSSL reads and writes,
//! so an auditor can check a signature with `openssl pkeyutl -verify -rawin` and no
//! Lifeboat at all.
//!
//! The key ID is the first 16 hex digits of the SHA-256 of the raw 32-byte public key:
//! short enough to print, long enough that two keys of one installation never collide.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use super::Error;

/// The only signature algorithm, as named in signature files.
pub const ALGORITHM: &str = "Ed25519";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) } followed by the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key pair that signs evidence. Lives only in the controller (its Secret).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.id)
            .finish_non_exhaustive()
    }
}

/// A public key that verifies evidence, with its key ID.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    id: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// The key ID of a raw public key.
fn key_id(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))[..16].to_string()
}

impl SigningKey {
    /// A new random key pair.
    pub fn generate() -> Result<SigningKey, Error> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| Error::Key("the system random source failed".into()))?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// From a PKCS#8 document (v2, as ring writes it, or v1, as `openssl genpkey` does).
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, Error> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(der))
            .map_err(|e| Error::Key(format!("not an Ed25519 PKCS#8 private key: {e}")))?;
        let raw: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| Error::Key("an Ed25519 public key has 32 bytes".into()))?;
        Ok(SigningKey {
            pair,
            pkcs8: der.to_vec(),
            public: PublicKey::from_raw(raw),
        })
    }

    /// From its PEM form (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(text: &str) -> Result<SigningKey, Error> {
        let blocks = pem_blocks(text, "PRIVATE KEY")?;
        match blocks.as_slice() {
            [der] => Self::from_pkcs8(der),
            [] => Err(Error::Key("no PRIVATE KEY block".into())),
            _ => Err(Error::Key("more than one PRIVATE KEY block".into())),
        }
    }

    /// The PEM form, for the Secret.
    pub fn to_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message`: 64 bytes.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

impl PublicKey {
    /// From the 32 raw bytes.
    pub fn from_raw(raw: [u8; 32]) -> PublicKey {
        PublicKey {
            id: key_id(&raw),
            raw,
        }
    }

    /// From base64 of the raw bytes (the form reports carry).
    pub fn from_base64(text: &str) -> Result<PublicKey, Error> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| Error::Key(format!("public key is not base64: {e}")))?;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Key("an Ed25519 public key has 32 bytes".into()))?;
        Ok(Self::from_raw(raw))
    }

    /// Every `PUBLIC KEY` block of a PEM text: a file may list several trusted keys (the
    /// current one and the ones before a rotation).
    pub fn all_from_pem(text: &str) -> Result<Vec<PublicKey>, Error> {
        let blocks = pem_blocks(text, "PUBLIC KEY")?;
        if blocks.is_empty() {
            return Err(Error::Key("no PUBLIC KEY block".into()));
        }
        blocks
            .iter()
            .map(|der| {
                let raw = der
                    .strip_prefix(&SPKI_PREFIX[..])
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .ok_or_else(|| {
                        Error::Key("a PUBLIC KEY block that is not an Ed25519 key".into())
                    })?;
                Ok(Self::from_raw(raw))
            })
            .collect()
    }

    /// The SubjectPublicKeyInfo PEM form.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        pem("PUBLIC KEY", &der)
    }

    /// Base64 of the raw bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.raw)
    }

    /// The key ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `sig` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::ED25519, &self.raw)
            .verify(message, sig)
            .is_ok()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER contents of every block labelled `label`; other blocks are skipped.
fn pem_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, Error> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match &mut body {
            None if line == begin => body = Some(String::new()),
            None => {}
            Some(b) if line == end => {
                out.push(
                    STANDARD
                        .decode(b.as_bytes())
                        .map_err(|e| Error::Key(format!("a {label} block is not base64: {e}")))?,
                );
                body = None;
            }
            Some(b) => b.push_str(line),
        }
    }
    if body.is_some() {
        return Err(Error::Key(format!("a {label} block has no END line")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_through_pem_and_signs() {
        let k = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&k.to_pem()).unwrap();
        assert_eq!(again.public(), k.public());
        let pubs = PublicKey::all_from_pem(&k.public().to_pem()).unwrap();
        assert_eq!(pubs, vec![k.public().clone()]);
        assert_eq!(
            PublicKey::from_base64(&k.public().to_base64()).unwrap(),
            *k.public()
        );
        let sig = k.sign(b"report");
        assert_eq!(sig.len(), 64);
        assert!(k.public().verify(b"report", &sig));
        assert!(!k.public().verify(b"rep0rt", &sig));
        let other = SigningKey::generate().unwrap();
        assert!(!other.public().verify(b"report", &sig));
        assert_ne!(other.public().id(), k.public().id());
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn the_key_id_is_the_start_of_the_public_keys_digest() {
        // RFC 8032 test 1's public key.
        let raw: [u8; 32] =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap()
                .try_into()
                .unwrap();
        let k = PublicKey::from_raw(raw);
        assert_eq!(k.id().len(), 16);
        assert_eq!(k.id(), &hex::encode(Sha256::digest(raw))[..16]);
        // RFC 8032 test 1: the empty message.
        let sig = hex::decode("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b").unwrap();
        assert!(k.verify(b"", &sig));
    }

    #[test]
    fn openssl_pem_forms_are_read() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1) and its `openssl pkey -pubout`.
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBzW2Lh9INuQV5snVJd/jqGUDuL4JGgWLuCg1FgTDjVc\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAN9O0Q4COA2kET/XyvJDDgv0RAVTbHGt/cQoropDBROM=\n-----END PUBLIC KEY-----\n";
        let k = SigningKey::from_pem(private).unwrap();
        let p = PublicKey::all_from_pem(public).unwrap();
        assert_eq!(p[0], *k.public());
        // Two keys in one file: both trusted.
        let two = format!(
            "{public}{}",
            SigningKey::generate().unwrap().public().to_pem()
        );
        assert_eq!(PublicKey::all_from_pem(&two).unwrap().len(), 2);
    }

    #[test]
    fn bad_key_files_are_refused_with_a_reason() {
        for (text, want) in [
            ("", "no PUBLIC KEY block"),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n", "has no END line"),
            (
                "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
                "not base64",
            ),
            (
                // An RSA-looking SPKI.
                "-----BEGIN PUBLIC KEY-----\nMA0GCSqGSIb3DQEBAQUAAwA=\n-----END PUBLIC KEY-----\n",
                "not an Ed25519 key",
            ),
        ] {
            let e = PublicKey::all_from_pem(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(SigningKey::from_pem("nothing").is_err());
    }
}
