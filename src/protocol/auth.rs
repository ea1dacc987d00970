//! Password authentication math for both sides of the proxy:
//! `mysql_native_password` and `caching_sha2_password` (fast path and the
//! full exchange), checked against a plaintext password or a stored hash.
//!
//! A client's native login reveals SHA1(password) to whoever holds
//! SHA1(SHA1(password)); that stage-1 hash is enough to log in to a backend
//! with native auth, which is how a user configured only by hash can still
//! be proxied. Nothing here does I/O.

use rand::Rng;
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Length of the scramble (nonce) the proxy sends.
pub const SCRAMBLE_LEN: usize = 20;

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";
/// MariaDB's `ed25519` authentication, as the client side names it.
pub const ED25519: &[u8] = b"client_ed25519";

/// caching_sha2_password "more data" codes.
pub const SHA2_FAST_AUTH_OK: u8 = 0x03;
pub const SHA2_PERFORM_FULL_AUTH: u8 = 0x04;
pub const SHA2_REQUEST_PUBLIC_KEY: u8 = 0x02;

/// A fresh random scramble of printable bytes (never NUL, so it survives
/// NUL-terminated framing in every client).
pub fn new_scramble() -> [u8; SCRAMBLE_LEN] {
    let mut rng = rand::rng();
    let mut s = [0u8; SCRAMBLE_LEN];
    for b in s.iter_mut() {
        *b = rng.random_range(0x21u8..0x7F);
    }
    s
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn xor<const N: usize>(a: &[u8; N], b: &[u8; N]) -> [u8; N] {
    let mut out = [0u8; N];
    for i in 0..N {
        out[i] = a[i] ^ b[i];
    }
    out
}

/// Compares without an early exit, so timing does not reveal how much of
/// a response was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the proxy knows about a user's password.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The password itself (from the config, an environment variable or a file).
    Plain(String),
    /// SHA1(SHA1(password)), as in `mysql.user` (`*HEX`).
    NativeHash([u8; 20]),
    /// SHA256(SHA256(password)): caching_sha2 fast path only.
    Sha2Hash([u8; 32]),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Parses a stored hash: `*` + 40 hex digits (native) or
    /// `sha2:` + 64 hex digits.
    pub fn parse_hash(s: &str) -> Option<Secret> {
        if let Some(hex) = s.strip_prefix('*') {
            return decode_hex::<20>(hex).map(Secret::NativeHash);
        }
        if let Some(hex) = s.strip_prefix("sha2:") {
            return decode_hex::<32>(hex).map(Secret::Sha2Hash);
        }
        None
    }

    fn native_hash(&self) -> Option<[u8; 20]> {
        match self {
            Secret::Plain(p) => Some(sha1(&[&sha1(&[p.as_bytes()])])),
            Secret::NativeHash(h) => Some(*h),
            Secret::Sha2Hash(_) => None,
        }
    }

    fn sha2_hash(&self) -> Option<[u8; 32]> {
        match self {
            Secret::Plain(p) => Some(sha256(&[&sha256(&[p.as_bytes()])])),
            Secret::Sha2Hash(h) => Some(*h),
            Secret::NativeHash(_) => None,
        }
    }

    fn is_empty_password(&self) -> bool {
        matches!(self, Secret::Plain(p) if p.is_empty())
    }

    /// True when this secret can check a login with `plugin`.
    pub fn supports(&self, plugin: &str) -> bool {
        match plugin {
            NATIVE => !matches!(self, Secret::Sha2Hash(_)),
            CACHING_SHA2 => !matches!(self, Secret::NativeHash(_)),
            _ => false,
        }
    }

    /// Checks a `mysql_native_password` response against `scramble`. On
    /// success returns what the proxy can log in to backends with.
    pub fn verify_native(&self, scramble: &[u8], response: &[u8]) -> Option<BackendSecret> {
        if self.is_empty_password() {
            return response.is_empty().then(|| BackendSecret::Plain(String::new()));
        }
        let stored = self.native_hash()?;
        let response: &[u8; 20] = response.try_into().ok()?;
        let stage1 = xor(response, &sha1(&[scramble, &stored]));
        if !constant_time_eq(&sha1(&[&stage1]), &stored) {
            return None;
        }
        Some(match self {
            Secret::Plain(p) => BackendSecret::Plain(p.clone()),
            _ => BackendSecret::NativeStage1(stage1),
        })
    }

    /// Checks a caching_sha2_password fast-path response. Only a plaintext
    /// secret yields a backend secret; a hash-only user must then complete
    /// the full exchange to reveal the password.
    pub fn verify_sha2_fast(&self, scramble: &[u8], response: &[u8]) -> bool {
        if self.is_empty_password() {
            return response.is_empty();
        }
        let Some(stored) = self.sha2_hash() else {
            return false;
        };
        let Ok(response) = <&[u8; 32]>::try_from(response) else {
            return false;
        };
        // response = SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || nonce)
        let stage1 = xor(response, &sha256(&[&stored, scramble]));
        constant_time_eq(&sha256(&[&stage1]), &stored)
    }

    /// Checks a cleartext password received in the full caching_sha2
    /// exchange (only ever accepted over TLS).
    pub fn verify_cleartext(&self, password: &[u8]) -> bool {
        match self {
            Secret::Plain(p) => constant_time_eq(p.as_bytes(), password),
            Secret::NativeHash(h) => constant_time_eq(&sha1(&[&sha1(&[password])]), h),
            Secret::Sha2Hash(h) => constant_time_eq(&sha256(&[&sha256(&[password])]), h),
        }
    }
}

/// What the proxy presents to a backend for a user.
#[derive(Clone, PartialEq, Eq)]
pub enum BackendSecret {
    Plain(String),
    /// SHA1(password): enough for `mysql_native_password`, nothing else.
    NativeStage1([u8; 20]),
}

impl std::fmt::Debug for BackendSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendSecret(<redacted>)")
    }
}

impl BackendSecret {
    /// The auth response for `plugin` and the backend's `scramble`; `None`
    /// when this secret cannot produce one.
    pub fn response(&self, plugin: &[u8], scramble: &[u8]) -> Option<Vec<u8>> {
        match (self, plugin) {
            (BackendSecret::Plain(p), _) if p.is_empty() => Some(Vec::new()),
            (BackendSecret::Plain(p), b"mysql_native_password") => {
                mysql_common::scramble::scramble_native(scramble, p.as_bytes()).map(|r| r.to_vec())
            }
            (BackendSecret::Plain(p), b"caching_sha2_password") => {
                mysql_common::scramble::scramble_sha256(scramble, p.as_bytes()).map(|r| r.to_vec())
            }
            // MariaDB's ed25519 accounts: the server's nonce signed with a
            // key derived from the password.
            (BackendSecret::Plain(p), ED25519) => Some(
                mysql_common::scramble::create_response_for_ed25519(p.as_bytes(), scramble)
                    .to_vec(),
            ),
            (BackendSecret::Plain(p), b"mysql_clear_password") => {
                let mut v = p.as_bytes().to_vec();
                v.push(0);
                Some(v)
            }
            (BackendSecret::NativeStage1(s1), b"mysql_native_password") => {
                Some(xor(s1, &sha1(&[scramble, &sha1(&[s1])])).to_vec())
            }
            _ => None,
        }
    }

    /// The cleartext password, when known (caching_sha2 full exchange).
    pub fn cleartext(&self) -> Option<&str> {
        match self {
            BackendSecret::Plain(p) => Some(p),
            BackendSecret::NativeStage1(_) => None,
        }
    }
}

/// For the caching_sha2 full exchange without TLS: the password, NUL
/// terminated, XORed with the scramble (then RSA-encrypted by the caller).
pub fn sha2_obfuscate(password: &str, scramble: &[u8]) -> Vec<u8> {
    let mut p = password.as_bytes().to_vec();
    p.push(0);
    if scramble.is_empty() {
        return p;
    }
    for (i, b) in p.iter_mut().enumerate() {
        *b ^= scramble[i % scramble.len()];
    }
    p
}

fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The `mysql.user`-style native hash of a password (`*HEX`), for docs
/// and the config tool.
pub fn native_hash_hex(password: &str) -> String {
    let h = sha1(&[&sha1(&[password.as_bytes()])]);
    let mut s = String::from("*");
    for b in h {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAMBLE: &[u8; 20] = b"abcdefghijklmnopqrst";

    #[test]
    fn native_login_with_plain_password_verifies() {
        let secret = Secret::Plain("app".into());
        let resp = mysql_common::scramble::scramble_native(SCRAMBLE, b"app").unwrap();
        assert_eq!(secret.verify_native(SCRAMBLE, &resp), Some(BackendSecret::Plain("app".into())));
    }

    #[test]
    fn native_login_with_wrong_password_fails() {
        let secret = Secret::Plain("app".into());
        let resp = mysql_common::scramble::scramble_native(SCRAMBLE, b"apx").unwrap();
        assert_eq!(secret.verify_native(SCRAMBLE, &resp), None);
        assert_eq!(secret.verify_native(SCRAMBLE, b"short"), None);
        assert_eq!(secret.verify_native(SCRAMBLE, b""), None);
    }

    #[test]
    fn native_hash_matches_mysql_password_function() {
        // PASSWORD('app') in MySQL/MariaDB.
        assert_eq!(native_hash_hex("app"), "*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3");
    }

    #[test]
    fn hash_only_user_yields_stage1_that_logs_in_to_backends() {
        let secret = Secret::parse_hash(&native_hash_hex("s3cret")).unwrap();
        let resp = mysql_common::scramble::scramble_native(SCRAMBLE, b"s3cret").unwrap();
        let backend = secret.verify_native(SCRAMBLE, &resp).unwrap();
        let other: &[u8] = b"ZYXWVUTSRQPONMLKJIHG";
        let expected = mysql_common::scramble::scramble_native(other, b"s3cret").unwrap();
        assert_eq!(backend.response(b"mysql_native_password", other).unwrap(), expected.to_vec());
        assert_eq!(backend.response(b"caching_sha2_password", other), None);
        assert_eq!(backend.response(ED25519, &[7; 32]), None);
    }

    #[test]
    fn ed25519_signs_the_nonce_with_the_password() {
        let plain = BackendSecret::Plain("s3cret".into());
        let nonce = [7u8; 32];
        let signature = plain.response(ED25519, &nonce).unwrap();
        assert_eq!(signature.len(), 64);
        // Deterministic (RFC 8032): the same nonce and password sign alike;
        // another nonce or password signs otherwise.
        assert_eq!(plain.response(ED25519, &nonce).unwrap(), signature);
        assert_ne!(plain.response(ED25519, &[8; 32]).unwrap(), signature);
        let other = BackendSecret::Plain("s3creT".into());
        assert_ne!(other.response(ED25519, &nonce).unwrap(), signature);
    }

    #[test]
    fn sha2_fast_path_verifies_plain_and_hash() {
        let resp = mysql_common::scramble::scramble_sha256(SCRAMBLE, b"pw").unwrap();
        assert!(Secret::Plain("pw".into()).verify_sha2_fast(SCRAMBLE, &resp));
        let h = sha256(&[&sha256(&[b"pw"])]);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let secret = Secret::parse_hash(&format!("sha2:{hex}")).unwrap();
        assert!(secret.verify_sha2_fast(SCRAMBLE, &resp));
        assert!(!secret.verify_sha2_fast(b"another scramble....", &resp));
        assert!(secret.verify_cleartext(b"pw"));
        assert!(!secret.verify_cleartext(b"pw2"));
    }

    #[test]
    fn empty_password_accepts_only_empty_response() {
        let s = Secret::Plain(String::new());
        assert!(s.verify_native(SCRAMBLE, b"").is_some());
        assert!(s.verify_native(SCRAMBLE, &[1; 20]).is_none());
        assert!(s.verify_sha2_fast(SCRAMBLE, b""));
    }

    #[test]
    fn scramble_has_no_nul_and_differs_each_time() {
        let a = new_scramble();
        assert!(!a.contains(&0));
        assert_ne!(a, new_scramble());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = format!(
            "{:?} {:?}",
            Secret::Plain("hunter2".into()),
            BackendSecret::Plain("hunter2".into())
        );
        assert!(!s.contains("hunter2"));
    }

    #[test]
    fn sha2_obfuscation_is_xor_with_scramble() {
        let o = sha2_obfuscate("ab", b"xyz");
        assert_eq!(o, vec![b'a' ^ b'x', b'b' ^ b'y', b'z']);
    }
}
