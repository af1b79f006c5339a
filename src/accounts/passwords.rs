//! Password hashes: argon2id in PHC format, computed on the [`HashPool`]'s threads (each with
//! its own preallocated memory). Blocking: call from a blocking thread; the web layer first takes
//! an [`Admission`] so that a flood is refused at once instead of queueing without end.

use argon2::Params;
use rand::RngExt as _;

use super::hash_pool::{Admission, Busy, HashPool, Load};
use crate::config::{HashCost, HashPoolSize};

/// Django's marker for an unusable password: no password ever matches a hash that starts
/// with it.
const UNUSABLE_PREFIX: char = '!';

pub struct Passwords {
    pool: HashPool,
    /// A real hash of a random password, checked when the account does not exist so that an
    /// unknown identifier costs the same work as a known one.
    dummy: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl Passwords {
    pub fn new(cost: HashCost, size: HashPoolSize) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let dummy = super::hash_pool::hash_here(&params, &random_text(24))?;
        let pool = HashPool::start(params, size)?;
        Ok(Self { pool, dummy })
    }

    /// A place in the hashing pool for one request, or [`Busy`] at once when it is full.
    pub fn admit(&self) -> Result<Admission, Busy> {
        self.pool.admit()
    }

    pub fn load(&self) -> Load {
        self.pool.load()
    }

    /// A PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash`.
    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        self.pool.hash(password)
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
    /// Fails only when the pool refuses the work ([`Busy`]) or has stopped.
    pub fn verify(&self, stored: &str, password: &str) -> anyhow::Result<bool> {
        if Self::is_usable(stored) && argon2::PasswordHash::new(stored).is_ok() {
            self.pool.verify(stored, password)
        } else {
            self.verify_dummy(password).map(|()| false)
        }
    }

    /// The work of one verification against an account that does not exist.
    pub fn verify_dummy(&self, password: &str) -> anyhow::Result<()> {
        self.pool.verify(&self.dummy, password).map(drop)
    }

    /// True when a stored hash was made with other parameters than today's, so that a
    /// successful sign-in can upgrade it.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(hash) = argon2::PasswordHash::new(stored) else { return false };
        let Ok(params) = Params::try_from(&hash) else { return true };
        let today = self.pool.params();
        hash.algorithm.as_str() != "argon2id"
            || params.m_cost() != today.m_cost()
            || params.t_cost() != today.t_cost()
            || params.p_cost() != today.p_cost()
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
        Passwords::new(HashCost { memory_kib: 64, iterations: 1, parallelism: 1 }, HashPoolSize::for_threads(1))
            .unwrap()
    }

    #[test]
    fn default_cost_is_owasp_argon2id() {
        let hash =
            Passwords::new(HashCost::default(), HashPoolSize::for_threads(1)).unwrap().hash("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    }

    #[test]
    fn verifies_only_the_right_password() {
        let p = cheap();
        let hash = p.hash("correct horse").unwrap();
        assert!(p.verify(&hash, "correct horse").unwrap());
        assert!(!p.verify(&hash, "correct horse ").unwrap());
        assert!(!p.verify(&hash, "").unwrap());
        assert_ne!(hash, p.hash("correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn unusable_passwords_never_match() {
        let stored = Passwords::unusable();
        assert!(!Passwords::is_usable(&stored));
        assert!(!cheap().verify(&stored, "").unwrap());
        assert!(!cheap().verify(&stored, &stored).unwrap());
        assert_ne!(Passwords::unusable(), stored);
    }

    #[test]
    fn detects_old_parameters() {
        let old = cheap();
        let new =
            Passwords::new(HashCost { memory_kib: 128, iterations: 1, parallelism: 1 }, HashPoolSize::for_threads(1))
                .unwrap();
        let hash = old.hash("pw").unwrap();
        assert!(!old.needs_rehash(&hash));
        assert!(new.needs_rehash(&hash));
        assert!(new.verify(&hash, "pw").unwrap(), "old hashes still verify");
    }
}
