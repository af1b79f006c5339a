//! Secrets in types whose `Debug` shows nothing, so they cannot leak through logs or panics.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rand::RngExt as _;

/// The deployment's secret (`FLEX_USER_SECRET_KEY`): signs cookies and keys the OTP hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

pub const MIN_SECRET_BYTES: usize = 32;

impl SecretKey {
    /// Hex when the text is an even-length run of hex digits, else base64 (standard or URL-safe,
    /// padded or not). Must decode to at least 32 bytes.
    pub fn parse(text: &str) -> Result<SecretKey, String> {
        let text = text.trim();
        let is_hex = !text.is_empty() && text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
        let bytes = if is_hex {
            hex::decode(text).map_err(|e| e.to_string())?
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or("is neither hex nor base64")?
        };
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "must be at least {MIN_SECRET_BYTES} bytes (64 hex digits or 44 base64 characters), got {}",
                bytes.len()
            ));
        }
        Ok(SecretKey(bytes))
    }

    /// A fresh random key of 64 bytes.
    pub fn random() -> SecretKey {
        let mut bytes = vec![0u8; 64];
        rand::rng().fill(&mut bytes[..]);
        SecretKey(bytes)
    }

    /// The key kept in the file at `path`, or, when there is no file yet, a new random one
    /// written there first (hex, readable by the owner only). `Ok((key, true))` when it was made
    /// now. Two processes starting at once agree: the file is created exclusively, and the one
    /// that loses reads the winner's key.
    pub fn load_or_create(path: &std::path::Path) -> Result<(SecretKey, bool), String> {
        use std::io::Write as _;
        let read = |path: &std::path::Path| -> Result<SecretKey, String> {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            SecretKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let key = SecretKey::random();
                file.write_all(format!("{}\n", hex::encode(&key.0)).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok((key, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((read(path)?, false)),
            Err(e) => Err(format!("cannot create {}: {e}", path.display())),
        }
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// HMAC-SHA256 of `data` under this key, separated by `purpose` so that one use's value is
    /// never valid for another; lowercase hex. For keys of rows that must not hold an address
    /// or identifier in clear, and for CSRF tokens.
    pub fn keyed_hash(&self, purpose: &str, data: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// A string that must not be printed: a password, a URL with credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive<T>(pub T);

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hex_and_base64() {
        let hex_key = "00".repeat(32);
        assert_eq!(SecretKey::parse(&hex_key).unwrap().expose(), &[0u8; 32]);
        let b64 = STANDARD.encode([7u8; 40]);
        assert_eq!(SecretKey::parse(&b64).unwrap().expose(), &[7u8; 40]);
        let url = URL_SAFE_NO_PAD.encode([0xfbu8; 33]);
        assert_eq!(SecretKey::parse(&url).unwrap().expose(), &[0xfbu8; 33]);
    }

    #[test]
    fn refuses_short_or_garbled_keys() {
        assert!(SecretKey::parse(&"ab".repeat(31)).unwrap_err().contains("at least 32 bytes"));
        assert!(SecretKey::parse("short").is_err());
        assert!(SecretKey::parse("not base64 at all!!").is_err());
        assert!(SecretKey::parse("").is_err());
    }

    #[test]
    fn keyed_hashes_depend_on_key_purpose_and_data() {
        let a = SecretKey::parse(&"ab".repeat(32)).unwrap();
        let b = SecretKey::parse(&"cd".repeat(32)).unwrap();
        let h = a.keyed_hash("throttle", b"alice");
        assert_eq!(h.len(), 64);
        assert_eq!(h, a.keyed_hash("throttle", b"alice"));
        assert_ne!(h, b.keyed_hash("throttle", b"alice"));
        assert_ne!(h, a.keyed_hash("csrf", b"alice"));
        assert_ne!(h, a.keyed_hash("throttle", b"bob"));
    }

    #[test]
    fn a_key_file_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let (made, created) = SecretKey::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (again, created) = SecretKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again, made);
        std::fs::write(&path, "short").unwrap();
        assert!(SecretKey::load_or_create(&path).unwrap_err().contains("secret.key"));
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = SecretKey::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "SecretKey(***)");
        assert_eq!(format!("{:?}", Sensitive("hunter2")), "***");
    }
}
