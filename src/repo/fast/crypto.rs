//! The repository's authenticated encryption (AES-256-CTR + Poly1305-AES, restic's
//! scheme: `IV ‖ ciphertext ‖ MAC`) and zstd compression of blobs and unpacked files,
//! done in place on caller-owned buffers so the hot path copies each byte as few times
//! as possible.

use aes256ctr_poly1305aes::{
    Aes256CtrPoly1305Aes,
    aead::{AeadInPlace, generic_array::GenericArray},
};
use rand::Rng;
use rustic_core::repofile::MasterKey;

use super::FastError;

/// Bytes added by encryption: 16 of IV in front, 16 of MAC behind.
pub const OVERHEAD: usize = 32;

/// The repository's data key, ready for use.
#[derive(Clone)]
pub struct Crypto {
    aead: Aes256CtrPoly1305Aes,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypto(..)")
    }
}

impl Crypto {
    /// The key of an opened repository (`Repository::key()`).
    ///
    /// # Errors
    /// If the key parts do not have restic's sizes (32 + 16 + 16 bytes).
    pub fn from_master_key(mk: &MasterKey) -> Result<Self, FastError> {
        if mk.encrypt.len() != 32 || mk.mac.k.len() != 16 || mk.mac.r.len() != 16 {
            return Err(FastError::Format("master key has the wrong size".into()));
        }
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&mk.encrypt);
        key[32..48].copy_from_slice(&mk.mac.k);
        key[48..].copy_from_slice(&mk.mac.r);
        let aead = Aes256CtrPoly1305Aes::new(GenericArray::from_slice(&key));
        key.fill(0);
        Ok(Self { aead })
    }

    /// A key from its 64 raw bytes (AES-256 key, Poly1305 `k`, Poly1305 `r`), the layout
    /// of restic's scrypt output and master key.
    #[must_use]
    pub fn from_raw(key: &[u8; 64]) -> Self {
        Self {
            aead: Aes256CtrPoly1305Aes::new(GenericArray::from_slice(key)),
        }
    }

    /// Encrypts `out[start..]` in place: the caller has reserved 16 bytes for the IV
    /// at `out[start-16..start]`; the MAC is appended.
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
    pub fn seal_append(&self, plain: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.reserve(plain.len() + OVERHEAD);
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(plain);
        self.seal_tail(out, at);
    }

    /// Appends `IV ‖ E(zstd(plain)) ‖ MAC` to `out`, compressing with `zstd` straight
    /// into `out` (no intermediate buffer) and encrypting in place.
    ///
    /// # Errors
    /// If zstd fails (it does not for valid levels).
    pub fn seal_compressed_append(
        &self,
        zstd: &mut zstd::bulk::Compressor<'static>,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FastError> {
        let at = out.len();
        out.reserve(16 + zstd::zstd_safe::compress_bound(plain.len()) + 16);
        out.extend_from_slice(&[0u8; 16]);
        zstd.compress_to_buffer(plain, &mut VecTail(out))
            .map_err(|e| FastError::Format(format!("zstd compression failed: {e}")))?;
        self.seal_tail(out, at);
        Ok(())
    }

    /// Decrypts `IV ‖ ciphertext ‖ MAC` in place and returns the plaintext's range in
    /// `data`.
    ///
    /// # Errors
    /// If the data is too short or the MAC does not match (wrong key or corruption).
    pub fn open_in_place(&self, data: &mut [u8]) -> Result<std::ops::Range<usize>, FastError> {
        if data.len() < OVERHEAD {
            return Err(FastError::Format("encrypted data is too short".into()));
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
            .map_err(|_| FastError::Mac)?;
        Ok(16..n - 16)
    }

    /// Decrypts a copy of `data`.
    ///
    /// # Errors
    /// As [`Crypto::open_in_place`].
    pub fn open(&self, data: &[u8]) -> Result<Vec<u8>, FastError> {
        let mut v = data.to_vec();
        let r = self.open_in_place(&mut v)?;
        v.truncate(r.end);
        v.drain(..r.start);
        Ok(v)
    }

    /// Encrypts an unpacked repository file (index, snapshot) the way a v2 repository
    /// stores it: version byte 2, then the zstd-compressed JSON.
    ///
    /// # Errors
    /// If zstd fails.
    pub fn seal_file(&self, json: &[u8], level: i32) -> Result<Vec<u8>, FastError> {
        let mut plain = vec![2u8];
        plain.extend_from_slice(
            &zstd::bulk::compress(json, level)
                .map_err(|e| FastError::Format(format!("zstd compression failed: {e}")))?,
        );
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        self.seal_append(&plain, &mut out);
        Ok(out)
    }

    /// Decrypts an unpacked repository file, undoing v2 compression if present.
    ///
    /// # Errors
    /// On MAC mismatch or an unknown format byte.
    pub fn open_file(&self, data: &[u8]) -> Result<Vec<u8>, FastError> {
        let plain = self.open(data)?;
        match plain.first() {
            Some(b'{' | b'[') => Ok(plain),
            Some(2) => zstd::stream::decode_all(&plain[1..])
                .map_err(|e| FastError::Format(format!("zstd decompression failed: {e}"))),
            _ => Err(FastError::Format("unknown repository file format".into())),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto() -> Crypto {
        Crypto::from_master_key(&MasterKey::new()).unwrap()
    }

    #[test]
    fn seal_open_round_trip() {
        let c = crypto();
        for n in [0usize, 1, 15, 16, 17, 1000, 1 << 20] {
            let plain: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let mut out = b"prefix".to_vec();
            c.seal_append(&plain, &mut out);
            assert_eq!(out.len(), 6 + n + OVERHEAD);
            assert_eq!(c.open(&out[6..]).unwrap(), plain);
        }
    }

    #[test]
    fn tampering_is_detected() {
        let c = crypto();
        let mut out = Vec::new();
        c.seal_append(b"secret data", &mut out);
        out[20] ^= 1;
        assert!(matches!(c.open(&out), Err(FastError::Mac)));
        let other = crypto();
        out[20] ^= 1;
        assert!(matches!(other.open(&out), Err(FastError::Mac)));
    }

    #[test]
    fn compressed_round_trip() {
        let c = crypto();
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
    fn file_round_trip() {
        let c = crypto();
        let json = br#"{"packs":[]}"#;
        let enc = c.seal_file(json, 3).unwrap();
        assert_eq!(c.open_file(&enc).unwrap(), json);
    }
}
