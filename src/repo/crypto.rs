//! The restic format's authenticated encryption (AES-256-CTR + Poly1305-AES, `IV || ciphertext
//! || MAC`) and its key files, for the two things rustic_core does not let us do: write lock
//! files, and write key files with scrypt parameters of our choosing.
//!
//! The master key is taken from rustic_core's public [`MasterKey`]; nothing here invents a
//! format, it only mirrors restic's design document.

use aes256ctr_poly1305aes::{
    Aes256CtrPoly1305Aes,
    aead::{Aead, AeadInPlace, generic_array::GenericArray},
};
use rustic_core::repofile::{KeyFile, MasterKey};

/// Decryption failed: wrong key, or the data was altered.
#[derive(Debug, thiserror::Error)]
#[error("decryption failed (wrong key or corrupted data)")]
pub struct DecryptError;

/// A 64-byte restic key: 32 bytes AES key, 16 bytes Poly1305 `k`, 16 bytes Poly1305 `r`.
#[derive(Clone)]
pub struct CryptoKey([u8; 64]);

impl std::fmt::Debug for CryptoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CryptoKey(..)")
    }
}

impl CryptoKey {
    /// The key of a repository's master key.
    pub fn from_master(mk: &MasterKey) -> Result<Self, DecryptError> {
        if mk.encrypt.len() != 32 || mk.mac.k.len() != 16 || mk.mac.r.len() != 16 {
            return Err(DecryptError);
        }
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&mk.encrypt);
        k[32..48].copy_from_slice(&mk.mac.k);
        k[48..].copy_from_slice(&mk.mac.r);
        Ok(Self(k))
    }

    fn cipher(&self) -> Aes256CtrPoly1305Aes {
        Aes256CtrPoly1305Aes::new(GenericArray::from_slice(&self.0))
    }

    /// Encrypts with a fresh random IV.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; 16] = rand::random();
        let mut out = Vec::with_capacity(plain.len() + 32);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .cipher()
            .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &[], &mut out[16..])
            .expect("encrypting an in-memory buffer cannot fail");
        out.extend_from_slice(&tag);
        out
    }

    /// Verifies and decrypts `IV || ciphertext || MAC`.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if data.len() < 32 {
            return Err(DecryptError);
        }
        self.cipher()
            .decrypt(GenericArray::from_slice(&data[..16]), &data[16..])
            .map_err(|_| DecryptError)
    }
}

/// Restic's uncompressed-or-zstd framing of small repository files (locks, snapshots, index)
/// in format v2: raw JSON starts with `{` or `[`, compressed data with the byte `2`.
pub fn decode_unpacked(plain: Vec<u8>) -> Option<Vec<u8>> {
    match plain.first() {
        None | Some(b'{' | b'[') => Some(plain),
        Some(2) => zstd::stream::decode_all(&plain[1..]).ok(),
        Some(_) => None,
    }
}

/// scrypt cost parameters as stored in a restic key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KdfParams {
    /// log2 of the CPU/memory cost `N`.
    pub log_n: u8,
    /// Block size `r`.
    pub r: u32,
    /// Parallelism `p`.
    pub p: u32,
}

impl KdfParams {
    /// Memory the derivation needs: 128 · r · N bytes.
    pub fn memory_bytes(&self) -> u64 {
        128 * u64::from(self.r) * (1u64 << self.log_n)
    }

    /// `N`.
    pub fn n(&self) -> u32 {
        1u32 << self.log_n
    }

    fn scrypt(&self) -> Result<scrypt::Params, String> {
        scrypt::Params::new(self.log_n, self.r, self.p).map_err(|e| e.to_string())
    }

    /// Checks that the parameters are valid for scrypt and that the derivation fits in
    /// 1 GiB of memory (a typo like `--kdf-log-n 30` would otherwise hang the machine).
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=24).contains(&self.log_n) {
            return Err(format!("log2(N) must be 1..=24, got {}", self.log_n));
        }
        if self.r == 0 || self.p == 0 {
            return Err("r and p must be at least 1".into());
        }
        if self.memory_bytes() > 1 << 30 {
            return Err(format!(
                "scrypt would need {} MiB of memory (limit 1024 MiB)",
                self.memory_bytes() >> 20
            ));
        }
        self.scrypt().map(|_| ())
    }
}

/// Builds a restic key file that wraps `master` under `password` with the given scrypt
/// parameters. Returns the file and its JSON (whose SHA-256 is the key's ID).
pub fn make_key_file(
    master: &MasterKey,
    password: &str,
    kdf: KdfParams,
    hostname: Option<String>,
    username: Option<String>,
) -> Result<(KeyFile, Vec<u8>), String> {
    kdf.validate()?;
    let salt: [u8; 64] = rand::random();
    let mut derived = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &salt, &kdf.scrypt()?, &mut derived)
        .map_err(|e| e.to_string())?;
    let wrapping = CryptoKey(derived);
    let master_json = serde_json::to_vec(master).map_err(|e| e.to_string())?;
    let file = KeyFile {
        hostname,
        username,
        created: Some(jiff::Zoned::now()),
        kdf: "scrypt".to_string(),
        n: kdf.n(),
        r: kdf.r,
        p: kdf.p,
        data: wrapping.encrypt(&master_json),
        salt: salt.to_vec(),
    };
    let json = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    Ok((file, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_decrypt_round_trip_and_tamper_detection() {
        let mk = MasterKey::new();
        let key = CryptoKey::from_master(&mk).unwrap();
        let enc = key.encrypt(b"{\"hello\":1}");
        assert_eq!(enc.len(), 11 + 32);
        assert_eq!(key.decrypt(&enc).unwrap(), b"{\"hello\":1}");
        let mut bad = enc.clone();
        bad[20] ^= 1;
        assert!(key.decrypt(&bad).is_err());
        let other = CryptoKey::from_master(&MasterKey::new()).unwrap();
        assert!(other.decrypt(&enc).is_err());
        assert!(key.decrypt(&enc[..20]).is_err());
    }

    #[test]
    fn key_file_unwraps_with_rustic_core() {
        let mk = MasterKey::new();
        let kdf = KdfParams {
            log_n: 10,
            r: 8,
            p: 1,
        };
        let (file, json) = make_key_file(&mk, "pw", kdf, Some("h".into()), None).unwrap();
        assert_eq!(file.n, 1024);
        // rustic_core (and restic) read the parameters from the file: the right password
        // yields the master key, a wrong one fails.
        let parsed: KeyFile = serde_json::from_slice(&json).unwrap();
        let unwrapped = parsed.key_from_password(&"pw").unwrap();
        let _ = unwrapped;
        assert!(parsed.key_from_password(&"wrong").is_err());
    }

    #[test]
    fn kdf_validation() {
        assert!(
            KdfParams {
                log_n: 15,
                r: 8,
                p: 1
            }
            .validate()
            .is_ok()
        );
        assert!(
            KdfParams {
                log_n: 0,
                r: 8,
                p: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            KdfParams {
                log_n: 22,
                r: 8,
                p: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            KdfParams {
                log_n: 15,
                r: 0,
                p: 1
            }
            .validate()
            .is_err()
        );
        assert_eq!(
            KdfParams {
                log_n: 15,
                r: 8,
                p: 8
            }
            .memory_bytes(),
            32 << 20
        );
    }

    #[test]
    fn unpacked_framing() {
        assert_eq!(decode_unpacked(b"{}".to_vec()).unwrap(), b"{}");
        let mut z = vec![2u8];
        z.extend(zstd::stream::encode_all(&b"{\"a\":1}"[..], 3).unwrap());
        assert_eq!(decode_unpacked(z).unwrap(), b"{\"a\":1}");
        assert!(decode_unpacked(vec![7, 1, 2]).is_none());
    }
}
