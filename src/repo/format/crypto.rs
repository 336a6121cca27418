//! The repository's authenticated encryption (AES-256-CTR + Poly1305-AES, restic's scheme:
//! `IV ‖ ciphertext ‖ MAC`), done in place on caller-owned buffers so the hot path copies
//! each byte as few times as possible, and zstd compression straight into the buffer that
//! is then encrypted. The one implementation of the scheme in Lifeboat: blobs, packs,
//! unpacked files, key files and locks all go through [`Crypto`].

use aes256ctr_poly1305aes::{
    Aes256CtrPoly1305Aes,
    aead::{AeadInPlace, generic_array::GenericArray},
};
use base64::Engine as _;
use rand::Rng;
use rustic_core::repofile::MasterKey;

use crate::repo::{Error, Result};

/// Bytes added by encryption: 16 of IV in front, 16 of MAC behind.
pub(crate) const OVERHEAD: usize = 32;

/// A 64-byte restic key (32 bytes AES key, 16 bytes Poly1305 `k`, 16 bytes Poly1305 `r`),
/// ready for use: the repository's master key, or a key derived from a password.
#[derive(Clone)]
pub(crate) struct Crypto {
    raw: [u8; 64],
    aead: Aes256CtrPoly1305Aes,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypto(..)")
    }
}

/// Authentication failed: the data was altered, or it was encrypted with another key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed (wrong key or altered data)")]
pub(crate) struct MacError;

impl Crypto {
    /// A key from its 64 raw bytes.
    pub(crate) fn from_raw(raw: [u8; 64]) -> Self {
        Self {
            aead: Aes256CtrPoly1305Aes::new(GenericArray::from_slice(&raw)),
            raw,
        }
    }

    /// A fresh random master key.
    pub(crate) fn random() -> Self {
        let mut raw = [0u8; 64];
        rand::rng().fill_bytes(&mut raw);
        Self::from_raw(raw)
    }

    /// The key of a master key as stored in a key file (or handed over by rustic_core).
    pub(crate) fn from_master_key(mk: &MasterKey) -> Result<Self> {
        if mk.encrypt.len() != 32 || mk.mac.k.len() != 16 || mk.mac.r.len() != 16 {
            return Err(Error::corrupt(
                "key file",
                "the master key has the wrong size",
            ));
        }
        let mut raw = [0u8; 64];
        raw[..32].copy_from_slice(&mk.encrypt);
        raw[32..48].copy_from_slice(&mk.mac.k);
        raw[48..].copy_from_slice(&mk.mac.r);
        Ok(Self::from_raw(raw))
    }

    /// The master key in rustic_core's form (prune and `init` still run on rustic_core;
    /// handing it the key skips the KDF).
    pub(crate) fn to_master_key(&self) -> MasterKey {
        // rustic_core does not export the type of the `mac` part: build the key from its
        // JSON form (restic's key file layout)
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        serde_json::from_value(serde_json::json!({
            "mac": { "k": b64(&self.raw[32..48]), "r": b64(&self.raw[48..]) },
            "encrypt": b64(&self.raw[..32]),
        }))
        .expect("a master key's JSON form parses")
    }

    /// Encrypts `out[iv_at + 16..]` in place: the caller has reserved 16 bytes for the IV
    /// at `out[iv_at..iv_at + 16]`; the MAC is appended.
    fn seal_tail(&self, out: &mut Vec<u8>, iv_at: usize) {
        let mut iv = [0u8; 16];
        rand::rng().fill_bytes(&mut iv);
        out[iv_at..iv_at + 16].copy_from_slice(&iv);
        let nonce = GenericArray::from_slice(&iv);
        let tag = self
            .aead
            .encrypt_in_place_detached(nonce, &[], &mut out[iv_at + 16..])
            .expect("AES-CTR accepts any length below 2^64 blocks");
        out.extend_from_slice(&tag);
    }

    /// Appends `IV ‖ E(plain) ‖ MAC` to `out`.
    pub(crate) fn seal_append(&self, plain: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.reserve(plain.len() + OVERHEAD);
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(plain);
        self.seal_tail(out, at);
    }

    /// `IV ‖ E(plain) ‖ MAC` as a new buffer.
    pub(crate) fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        self.seal_append(plain, &mut out);
        out
    }

    /// Appends `IV ‖ E(zstd(plain)) ‖ MAC` to `out`, compressing with `zstd` straight
    /// into `out` (no intermediate buffer) and encrypting in place.
    pub(crate) fn seal_compressed_append(
        &self,
        zstd: &mut zstd::bulk::Compressor<'static>,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let at = out.len();
        out.reserve(16 + zstd::zstd_safe::compress_bound(plain.len()) + 16);
        out.extend_from_slice(&[0u8; 16]);
        zstd.compress_to_buffer(plain, &mut VecTail(out))
            .map_err(|e| Error::Internal(format!("zstd compression failed: {e}")))?;
        self.seal_tail(out, at);
        Ok(())
    }

    /// Decrypts `IV ‖ ciphertext ‖ MAC` in place and returns the plaintext's range in
    /// `data`.
    pub(crate) fn open_in_place(
        &self,
        data: &mut [u8],
    ) -> std::result::Result<std::ops::Range<usize>, MacError> {
        if data.len() < OVERHEAD {
            return Err(MacError);
        }
        let n = data.len();
        let (head, rest) = data.split_at_mut(16);
        let (body, tag) = rest.split_at_mut(n - OVERHEAD);
        self.aead
            .decrypt_in_place_detached(
                GenericArray::from_slice(head),
                &[],
                body,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| MacError)?;
        Ok(16..n - 16)
    }

    /// Decrypts a copy of `data`.
    pub(crate) fn open(&self, data: &[u8]) -> std::result::Result<Vec<u8>, MacError> {
        let mut v = data.to_vec();
        let r = self.open_in_place(&mut v)?;
        v.truncate(r.end);
        v.drain(..r.start);
        Ok(v)
    }
}

/// A `Vec` seen by zstd as the free space after its current end, so compressed bytes
/// are appended where they will be encrypted.
struct VecTail<'a>(&'a mut Vec<u8>);

// SAFETY: the slice, capacity and pointer all describe the vector's spare capacity past
// its length; zstd writes at most `capacity()` bytes there and reports how many, which
// `filled_until` adds to the length, so every byte below the new length is initialised.
unsafe impl zstd::zstd_safe::WriteBuf for VecTail<'_> {
    fn as_slice(&self) -> &[u8] {
        &[]
    }
    fn capacity(&self) -> usize {
        self.0.capacity() - self.0.len()
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        let len = self.0.len();
        // SAFETY: `len <= capacity`, so the offset stays inside (or one past) the allocation
        unsafe { self.0.as_mut_ptr().add(len) }
    }
    unsafe fn filled_until(&mut self, n: usize) {
        let len = self.0.len();
        // SAFETY: the caller (zstd) guarantees the first `n` spare bytes were written
        unsafe { self.0.set_len(len + n) };
    }
}

/// Decompresses a zstd frame of at most `limit` bytes of output; more is an error before
/// more memory is taken (the window a decoder may use is zstd's default limit, 128 MiB).
pub(crate) fn decompress_bounded(data: &[u8], limit: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut dec = zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    (&mut dec)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let c = Crypto::random();
        for n in [0usize, 1, 15, 16, 17, 1000, 1 << 20] {
            let plain: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let mut out = b"prefix".to_vec();
            c.seal_append(&plain, &mut out);
            assert_eq!(out.len(), 6 + n + OVERHEAD);
            assert_eq!(c.open(&out[6..]).unwrap(), plain);
        }
    }

    #[test]
    fn tampering_and_short_data_are_detected() {
        let c = Crypto::random();
        let mut out = c.seal(b"secret data");
        out[20] ^= 1;
        assert_eq!(c.open(&out), Err(MacError));
        out[20] ^= 1;
        assert_eq!(Crypto::random().open(&out), Err(MacError));
        assert_eq!(c.open(&out[..20]), Err(MacError));
        assert_eq!(c.open(&[]), Err(MacError));
    }

    #[test]
    fn compressed_round_trip() {
        let c = Crypto::random();
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let plain = b"abcabcabc".repeat(10_000);
        let mut out = b"x".to_vec();
        c.seal_compressed_append(&mut z, &plain, &mut out).unwrap();
        let out = &out[1..];
        assert!(out.len() < plain.len() / 10);
        let z = c.open(out).unwrap();
        assert_eq!(zstd::bulk::decompress(&z, plain.len()).unwrap(), plain);
    }

    #[test]
    fn master_key_round_trips_through_rustic_core_form() {
        let c = Crypto::random();
        let back = Crypto::from_master_key(&c.to_master_key()).unwrap();
        assert_eq!(back.open(&c.seal(b"x")).unwrap(), b"x");
        let mut bad = c.to_master_key();
        bad.encrypt.pop();
        assert!(Crypto::from_master_key(&bad).is_err());
    }

    #[test]
    fn decompression_is_bounded() {
        let bomb = zstd::bulk::compress(&vec![0u8; 10 << 20], 3).unwrap();
        assert!(bomb.len() < 4096);
        assert!(decompress_bounded(&bomb, 1 << 20).is_err());
        assert_eq!(decompress_bounded(&bomb, 10 << 20).unwrap().len(), 10 << 20);
        assert!(decompress_bounded(b"not zstd", 100).is_err());
    }
}
