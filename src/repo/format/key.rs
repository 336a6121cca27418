//! Key files (`keys/<id>`): the repository's master key wrapped under a password with
//! scrypt. The parameters of a key come from the key file, so a repository someone else
//! controls chooses how much memory and time opening it costs: they are checked against
//! [`KdfParams::validate`]'s bounds before anything is derived, and a repository with too
//! many key files is refused after [`limits::KEYS_TRIED`] of them.

use serde::{Deserialize, Serialize};

use super::{crypto::Crypto, limits};
use crate::repo::{Error, Result};

/// scrypt cost parameters as stored in a restic key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KdfParams {
    /// log2 of the CPU/memory cost `N`.
    pub log_n: u8,
    /// Block size `r`.
    pub r: u32,
    /// Parallelism `p`.
    pub p: u32,
}

/// Largest `log2(N)` accepted.
pub(crate) const MAX_LOG_N: u8 = 20;
/// Largest `r` accepted.
pub(crate) const MAX_R: u32 = 32;
/// Largest `p` accepted.
pub(crate) const MAX_P: u32 = 64;
/// Most memory a derivation may need (128 · r · N bytes).
pub(crate) const MAX_MEMORY: u64 = 1 << 30;
/// Most work a derivation may need, in units of `N · r · p` (2^18 takes ~0.1 s on the
/// reference machine, so this bound is ~6 s).
pub(crate) const MAX_WORK: u64 = 1 << 24;

impl KdfParams {
    /// Memory the derivation needs: 128 · r · N bytes.
    pub fn memory_bytes(&self) -> u64 {
        128 * u64::from(self.r) * (1u64 << self.log_n.min(63))
    }

    /// `N`.
    pub fn n(&self) -> u64 {
        1u64 << self.log_n.min(63)
    }

    /// Checks the parameters against the bounds Lifeboat creates and opens keys with:
    /// `1 <= log2(N) <=` [`MAX_LOG_N`], `1 <= r <=` [`MAX_R`], `1 <= p <=` [`MAX_P`],
    /// memory (128 · r · N) at most [`MAX_MEMORY`], work (N · r · p) at most
    /// [`MAX_WORK`]. restic's and rustic's own choices (N = 2^15..2^17, r = 8, p = 1..10)
    /// are well inside; a typo like `--kdf-log-n 30`, or a key file made to exhaust the
    /// machine, is refused before any derivation.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=MAX_LOG_N).contains(&self.log_n) {
            return Err(format!(
                "log2(N) must be 1..={MAX_LOG_N}, got {}",
                self.log_n
            ));
        }
        if !(1..=MAX_R).contains(&self.r) || !(1..=MAX_P).contains(&self.p) {
            return Err(format!(
                "r must be 1..={MAX_R} and p 1..={MAX_P}, got r={} p={}",
                self.r, self.p
            ));
        }
        if self.memory_bytes() > MAX_MEMORY {
            return Err(format!(
                "scrypt would need {} MiB of memory (limit {} MiB)",
                self.memory_bytes() >> 20,
                MAX_MEMORY >> 20
            ));
        }
        let work = self.n() * u64::from(self.r) * u64::from(self.p);
        if work > MAX_WORK {
            return Err(format!(
                "scrypt work N·r·p = 2^{:.1} is above the limit 2^{}",
                (work as f64).log2(),
                MAX_WORK.trailing_zeros()
            ));
        }
        Ok(())
    }

    /// The parameters of a key file (`N` as stored), validated.
    fn from_file(n: u64, r: u64, p: u64) -> std::result::Result<Self, String> {
        if n < 2 || !n.is_power_of_two() {
            return Err(format!("N={n} is not a power of two above 1"));
        }
        let log_n = u8::try_from(n.trailing_zeros()).unwrap_or(u8::MAX);
        let (Ok(r32), Ok(p32)) = (u32::try_from(r), u32::try_from(p)) else {
            return Err(format!("r={r} or p={p} is out of range"));
        };
        let params = Self {
            log_n,
            r: r32,
            p: p32,
        };
        params
            .validate()
            .map_err(|e| format!("N=2^{log_n}, r={r}, p={p}: {e}"))?;
        Ok(params)
    }

    fn derive(&self, password: &str, salt: &[u8]) -> std::result::Result<[u8; 64], String> {
        let params = scrypt::Params::new(self.log_n, self.r, self.p).map_err(|e| e.to_string())?;
        let mut out = [0u8; 64];
        scrypt::scrypt(password.as_bytes(), salt, &params, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <&str>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// A key file as restic writes it.
#[derive(Serialize, Deserialize)]
struct KeyFileJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    kdf: String,
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
    #[serde(with = "b64")]
    salt: Vec<u8>,
    #[serde(with = "b64")]
    data: Vec<u8>,
}

/// Builds a key file that wraps `master` under `password` with the given scrypt
/// parameters. Returns its JSON (whose SHA-256 is the key's ID).
pub(crate) fn make_key_file(
    master: &Crypto,
    password: &str,
    kdf: KdfParams,
    hostname: Option<String>,
    username: Option<String>,
) -> std::result::Result<Vec<u8>, String> {
    kdf.validate()?;
    let salt: [u8; 64] = rand::random();
    let wrapping = Crypto::from_raw(kdf.derive(password, &salt)?);
    let master_json = serde_json::to_vec(&master.to_master_key()).map_err(|e| e.to_string())?;
    let file = KeyFileJson {
        created: Some(jiff::Timestamp::now().to_string()),
        username,
        hostname,
        kdf: "scrypt".to_string(),
        n: kdf.n(),
        r: u64::from(kdf.r),
        p: u64::from(kdf.p),
        salt: salt.to_vec(),
        data: wrapping.seal(&master_json),
    };
    serde_json::to_vec(&file).map_err(|e| e.to_string())
}

/// What opening one key file with a password gave.
#[derive(Debug)]
pub(crate) enum KeyOpen {
    /// The password opens it: the master key.
    Opened(Crypto),
    /// Well-formed, but the password is not this key's.
    WrongPassword,
}

/// The KDF parameters of a key file, checked, without deriving anything.
#[cfg(any(test, fuzzing))]
pub(crate) fn key_params(json: &[u8]) -> std::result::Result<KdfParams, String> {
    let file: KeyFileJson =
        serde_json::from_slice(json).map_err(|e| format!("not a key file: {e}"))?;
    check_file(&file)
}

fn check_file(file: &KeyFileJson) -> std::result::Result<KdfParams, String> {
    if file.kdf != "scrypt" {
        return Err(format!("unknown key derivation function {:?}", file.kdf));
    }
    if file.salt.is_empty() || file.salt.len() > 1024 {
        return Err(format!("salt of {} bytes", file.salt.len()));
    }
    KdfParams::from_file(file.n, file.r, file.p)
}

/// Opens a key file (at most [`limits::KEY_FILE`] bytes, checked by the caller) with
/// `password`. Malformed files and parameters beyond the bounds are errors (as
/// `String`s naming the problem), raised before any key is derived.
pub(crate) fn open_key_file(json: &[u8], password: &str) -> std::result::Result<KeyOpen, String> {
    if json.len() as u64 > limits::KEY_FILE {
        return Err(format!("key file of {} bytes", json.len()));
    }
    let file: KeyFileJson =
        serde_json::from_slice(json).map_err(|e| format!("not a key file: {e}"))?;
    let params = check_file(&file)?;
    let wrapping = Crypto::from_raw(params.derive(password, &file.salt)?);
    let Ok(plain) = wrapping.open(&file.data) else {
        return Ok(KeyOpen::WrongPassword);
    };
    let mk: rustic_core::repofile::MasterKey = serde_json::from_slice(&plain)
        .map_err(|e| format!("the key file's master key does not parse: {e}"))?;
    Crypto::from_master_key(&mk)
        .map(KeyOpen::Opened)
        .map_err(|e| e.to_string())
}

/// Finds the master key: tries the key files (`(name, size)` as listed) with `password`,
/// at most [`limits::KEYS_TRIED`] of them, largest-first never: in listing order.
/// `read` fetches one key file.
pub(crate) fn find_master_key(
    keys: &[(String, u64)],
    password: &str,
    location: &str,
    read: impl Fn(&str) -> Result<Vec<u8>>,
) -> Result<Crypto> {
    if keys.is_empty() {
        return Err(Error::corrupt("keys/", "the repository has no key files"));
    }
    let mut refused = Vec::new();
    let mut tried = 0usize;
    for (name, size) in keys {
        if tried == limits::KEYS_TRIED {
            refused.push(format!(
                "{} more key files not tried (at most {} are)",
                keys.len() - limits::KEYS_TRIED,
                limits::KEYS_TRIED
            ));
            break;
        }
        tried += 1;
        if *size > limits::KEY_FILE {
            refused.push(format!("keys/{name}: {size} bytes"));
            continue;
        }
        let json = read(name)?;
        match open_key_file(&json, password) {
            Ok(KeyOpen::Opened(key)) => return Ok(key),
            Ok(KeyOpen::WrongPassword) => {}
            Err(why) => refused.push(format!("keys/{name}: {why}")),
        }
    }
    if refused.len() == tried.min(keys.len()) && !refused.is_empty() {
        // Not one key could even be tried: that is not a wrong password.
        return Err(Error::Unsupported(format!(
            "no key file of {location} can be opened: {}",
            refused.join("; ")
        )));
    }
    if !refused.is_empty() {
        tracing::warn!(refused = %refused.join("; "), "key files refused");
    }
    Err(Error::WrongPassword(location.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        log_n: 10,
        r: 8,
        p: 1,
    };

    #[test]
    fn key_file_opens_with_its_password_only_and_rustic_core_agrees() {
        let master = Crypto::random();
        let json = make_key_file(&master, "pw", FAST, Some("h".into()), None).unwrap();
        match open_key_file(&json, "pw").unwrap() {
            KeyOpen::Opened(k) => assert_eq!(k.open(&master.seal(b"x")).unwrap(), b"x"),
            KeyOpen::WrongPassword => panic!("the right password must open it"),
        }
        assert!(matches!(
            open_key_file(&json, "wrong").unwrap(),
            KeyOpen::WrongPassword
        ));
        assert_eq!(key_params(&json).unwrap(), FAST);
        // rustic_core (and restic) read the parameters from the file
        let parsed: rustic_core::repofile::KeyFile = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed.n, 1024);
        assert!(parsed.key_from_password(&"pw").is_ok());
        assert!(parsed.key_from_password(&"wrong").is_err());
    }

    /// A key file with the given parameters (and garbage data: these must be refused
    /// before anything is derived, so the data is never looked at).
    fn hostile(n: u64, r: u64, p: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "kdf": "scrypt", "N": n, "r": r, "p": p,
            "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "data": "AAAA"
        }))
        .unwrap()
    }

    #[test]
    fn absurd_scrypt_parameters_are_refused_before_deriving() {
        let started = std::time::Instant::now();
        for (n, r, p) in [
            (1u64 << 40, 8, 1),
            (1 << 62, 1, 1),
            (1 << 21, 8, 1),
            (1 << 15, 1 << 20, 1),
            (1 << 15, 8, 1 << 30),
            (1 << 20, 32, 1),
            (1 << 18, 8, 64),
            (3 << 10, 8, 1),
            (0, 8, 1),
            (1 << 15, 0, 1),
            (1 << 15, u64::MAX, 1),
        ] {
            let err = open_key_file(&hostile(n, r, p), "pw").unwrap_err();
            assert!(!err.is_empty(), "N={n} r={r} p={p}");
        }
        // a derivation at the bounds takes seconds; none of the above was attempted
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn malformed_key_files_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            b"{\"kdf\":\"argon2\",\"N\":1024,\"r\":8,\"p\":1,\"salt\":\"AA==\",\"data\":\"AA==\"}",
            b"{\"kdf\":\"scrypt\",\"N\":1024,\"r\":8,\"p\":1,\"salt\":\"!!\",\"data\":\"AA==\"}",
            b"{\"kdf\":\"scrypt\",\"N\":1024,\"r\":8,\"p\":1,\"salt\":\"\",\"data\":\"AA==\"}",
            b"{\"kdf\":\"scrypt\",\"N\":-1,\"r\":8,\"p\":1,\"salt\":\"AA==\",\"data\":\"AA==\"}",
        ] {
            assert!(
                open_key_file(bad, "pw").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // data that is no encrypted master key: a wrong password, not a crash
        assert!(matches!(
            open_key_file(&hostile(1024, 8, 1), "pw").unwrap(),
            KeyOpen::WrongPassword
        ));
    }

    #[test]
    fn repository_of_refused_keys_is_not_a_wrong_password() {
        let keys = vec![("a".to_string(), 100), ("b".to_string(), 100)];
        let err = find_master_key(&keys, "pw", "here", |_| Ok(hostile(1 << 40, 8, 1))).unwrap_err();
        assert_eq!(err.category(), "UnsupportedRepository", "{err}");
        let master = Crypto::random();
        let good = make_key_file(&master, "other", FAST, None, None).unwrap();
        let err = find_master_key(&keys, "pw", "here", |n| {
            Ok(if n == "a" {
                hostile(1 << 40, 8, 1)
            } else {
                good.clone()
            })
        })
        .unwrap_err();
        assert_eq!(err.category(), "WrongPassword", "{err}");
        let key = find_master_key(&keys, "other", "here", |n| {
            Ok(if n == "a" {
                hostile(1 << 40, 8, 1)
            } else {
                good.clone()
            })
        })
        .unwrap();
        assert_eq!(key.open(&master.seal(b"y")).unwrap(), b"y");
        // thousands of key files: only the first few are tried
        let many: Vec<(String, u64)> = (0..10_000).map(|i| (format!("k{i}"), 100)).collect();
        let reads = std::cell::Cell::new(0);
        let err = find_master_key(&many, "pw", "here", |_| {
            reads.set(reads.get() + 1);
            Ok(good.clone())
        })
        .unwrap_err();
        assert_eq!(err.category(), "WrongPassword");
        assert_eq!(reads.get(), limits::KEYS_TRIED);
    }

    #[test]
    fn kdf_validation() {
        let ok = |log_n, r, p| KdfParams { log_n, r, p }.validate().is_ok();
        assert!(ok(15, 8, 1));
        assert!(ok(15, 8, 2));
        assert!(ok(17, 8, 1));
        assert!(ok(12, 8, 1));
        assert!(!ok(0, 8, 1));
        assert!(!ok(22, 8, 1));
        assert!(!ok(15, 0, 1));
        assert!(!ok(15, 8, 0));
        assert!(!ok(20, 8, 4), "work above the bound");
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
}
