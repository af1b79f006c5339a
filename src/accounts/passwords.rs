//! Password hashes: argon2id in PHC format. CPU- and memory-heavy: call from blocking threads
//! only (the web layer runs these in `web::block` behind a limit of about one hash per core).

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngExt as _;

use crate::config::HashCost;

/// Django's marker for an unusable password: no password ever matches a hash that starts
/// with it.
const UNUSABLE_PREFIX: char = '!';

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// A real hash of a random password, checked when the account does not exist so that an
    /// unknown identifier costs the same work as a known one.
    dummy: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("params", &self.params).finish_non_exhaustive()
    }
}

impl Passwords {
    pub fn new(cost: HashCost) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let mut passwords = Self { params, dummy: String::new() };
        passwords.dummy = passwords.hash(&random_text(24))?;
        Ok(passwords)
    }

    fn argon2(&self) -> Argon2<'_> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash`.
    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        rand::rng().fill(&mut salt[..]);
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hash =
            self.argon2().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        Ok(hash.to_string())
    }

    /// The stored form of "no password": an unusable marker with random text after it, so
    /// that no two look alike (as Django's `set_unusable_password`).
    pub fn unusable() -> String {
        format!("{UNUSABLE_PREFIX}{}", random_text(40))
    }

    pub fn is_usable(stored: &str) -> bool {
        !stored.starts_with(UNUSABLE_PREFIX)
    }

    /// Checks `password` against a stored hash. An unusable or garbled hash never matches, but
    /// still costs one full hash, so the answer's timing says nothing about the account.
    pub fn verify(&self, stored: &str, password: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(hash) if Self::is_usable(stored) => self.argon2().verify_password(password.as_bytes(), &hash).is_ok(),
            _ => {
                self.verify_dummy(password);
                false
            }
        }
    }

    /// The work of one verification against an account that does not exist.
    pub fn verify_dummy(&self, password: &str) {
        if let Ok(hash) = PasswordHash::new(&self.dummy) {
            let _ = self.argon2().verify_password(password.as_bytes(), &hash);
        }
    }

    /// True when a stored hash was made with other parameters than today's, so that a
    /// successful sign-in can upgrade it.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else { return false };
        let Ok(params) = Params::try_from(&hash) else { return true };
        hash.algorithm.as_str() != "argon2id"
            || params.m_cost() != self.params.m_cost()
            || params.t_cost() != self.params.t_cost()
            || params.p_cost() != self.params.p_cost()
    }
}

fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(HashCost { memory_kib: 64, iterations: 1, parallelism: 1 }).unwrap()
    }

    #[test]
    fn default_cost_is_owasp_argon2id() {
        let hash = Passwords::new(HashCost::default()).unwrap().hash("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    }

    #[test]
    fn verifies_only_the_right_password() {
        let p = cheap();
        let hash = p.hash("correct horse").unwrap();
        assert!(p.verify(&hash, "correct horse"));
        assert!(!p.verify(&hash, "correct horse "));
        assert!(!p.verify(&hash, ""));
        assert_ne!(hash, p.hash("correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn unusable_passwords_never_match() {
        let stored = Passwords::unusable();
        assert!(!Passwords::is_usable(&stored));
        assert!(!cheap().verify(&stored, ""));
        assert!(!cheap().verify(&stored, &stored));
        assert_ne!(Passwords::unusable(), stored);
    }

    #[test]
    fn detects_old_parameters() {
        let old = cheap();
        let new = Passwords::new(HashCost { memory_kib: 128, iterations: 1, parallelism: 1 }).unwrap();
        let hash = old.hash("pw").unwrap();
        assert!(!old.needs_rehash(&hash));
        assert!(new.needs_rehash(&hash));
        assert!(new.verify(&hash, "pw"), "old hashes still verify");
    }
}
