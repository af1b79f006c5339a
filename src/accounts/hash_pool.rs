//! The argon2 pool: a fixed set of threads, each holding one argon2 memory buffer that every hash
//! it runs reuses, fed by a bounded queue.
//!
//! Why: argon2 needs `m_cost` KiB (19 MiB by default) per hash. Allocated afresh on whichever
//! blocking thread runs it, that memory stays with the thread's allocator arena, so the process
//! grew by 19 MiB for every thread that ever hashed (880 MB under a sign-in load). Here memory is
//! `threads × m_cost`, allocated once, whatever the load.
//!
//! Admission is the web layer's load shedding: a request takes an [`Admission`] before it touches
//! the database, and when `threads + queue` requests already hold one it is refused at once
//! ([`Busy`], answered 503 with `Retry-After`) instead of waiting in line. A job that still waited
//! past `max_wait` (a machine starved of CPU) is refused when a thread picks it up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngExt as _;

use crate::config::HashPoolSize;

/// The pool is full, or a job waited too long: try again after `retry_after_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is busy: try again in {retry_after_secs} s")]
pub struct Busy {
    pub retry_after_secs: u64,
}

/// What the pool is doing, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub threads: usize,
    /// Jobs being hashed now.
    pub hashing: usize,
    /// Jobs waiting for a thread.
    pub queued: usize,
    /// Requests refused since start (full, or waited too long).
    pub shed: u64,
}

/// A place in the pool, held while a request may hash; dropping it frees the place.
#[must_use]
#[derive(Debug)]
pub struct Admission(Arc<Shared>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Work {
    Hash { password: String },
    Verify { stored: String, password: String },
}

enum Done {
    Hashed(Result<String, String>),
    Verified(bool),
}

struct Job {
    work: Work,
    queued_at: Instant,
    reply: SyncSender<Result<Done, Busy>>,
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    threads: usize,
    max_wait: Duration,
    admitted: AtomicUsize,
    queued: AtomicUsize,
    hashing: AtomicUsize,
    shed: AtomicU64,
    /// Moving average of one hash's time, in microseconds, for `Retry-After`.
    hash_micros: AtomicU64,
}

impl Shared {
    fn busy(&self) -> Busy {
        self.shed.fetch_add(1, Ordering::Relaxed);
        let waiting = (self.queued.load(Ordering::Relaxed) + self.hashing.load(Ordering::Relaxed)) as u64;
        let micros = waiting * self.hash_micros.load(Ordering::Relaxed) / self.threads.max(1) as u64;
        Busy { retry_after_secs: micros.div_ceil(1_000_000).clamp(1, 60) }
    }
}

pub struct HashPool {
    params: Params,
    jobs: SyncSender<Job>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool").field("params", &self.params).field("shared", &self.shared).finish()
    }
}

impl HashPool {
    /// Starts `size.threads` threads, each allocating its buffer of `params.m_cost()` KiB once.
    /// They end when the pool is dropped.
    pub fn start(params: Params, size: HashPoolSize) -> anyhow::Result<HashPool> {
        let threads = size.threads.max(1);
        let capacity = threads + size.queue;
        let (jobs, receiver) = sync_channel(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let shared = Arc::new(Shared {
            capacity,
            threads,
            max_wait: size.max_wait,
            admitted: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            hashing: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
            hash_micros: AtomicU64::new(25_000),
        });
        for n in 0..threads {
            let (receiver, shared, params) = (receiver.clone(), shared.clone(), params.clone());
            std::thread::Builder::new().name(format!("argon2-{n}")).spawn(move || work(&receiver, &shared, &params))?;
        }
        Ok(HashPool { params, jobs, shared })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// A place for one request, or [`Busy`] at once when every place is taken.
    pub fn admit(&self) -> Result<Admission, Busy> {
        let shared = &self.shared;
        shared
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < shared.capacity).then_some(n + 1))
            .map_err(|_| shared.busy())?;
        Ok(Admission(shared.clone()))
    }

    pub fn load(&self) -> Load {
        let s = &self.shared;
        Load {
            threads: s.threads,
            hashing: s.hashing.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            shed: s.shed.load(Ordering::Relaxed),
        }
    }

    /// A new PHC string for `password` under the pool's parameters. Blocks until a thread has
    /// hashed it (the queue is bounded: callers without an admission may wait for room).
    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        match self.run(Work::Hash { password: password.to_owned() })? {
            Done::Hashed(result) => result.map_err(|e| anyhow::anyhow!("argon2: {e}")),
            Done::Verified(_) => unreachable!("a hash job answers with a hash"),
        }
    }

    /// True when `password` matches the PHC string `stored`; a garbled `stored` never matches.
    pub fn verify(&self, stored: &str, password: &str) -> anyhow::Result<bool> {
        match self.run(Work::Verify { stored: stored.to_owned(), password: password.to_owned() })? {
            Done::Verified(matched) => Ok(matched),
            Done::Hashed(_) => unreachable!("a verify job answers with a verdict"),
        }
    }

    fn run(&self, work: Work) -> anyhow::Result<Done> {
        let (reply, answer) = sync_channel(1);
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(Job { work, queued_at: Instant::now(), reply }).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            anyhow::bail!("the hashing threads have stopped");
        }
        Ok(answer.recv().map_err(|_| anyhow::anyhow!("a hashing thread stopped mid-job"))??)
    }
}

fn work(receiver: &Mutex<Receiver<Job>>, shared: &Shared, params: &Params) {
    let mut memory = vec![Block::default(); params.block_count()];
    loop {
        // the lock is held only while waiting for the next job
        let next = receiver.lock().map(|r| r.recv());
        let Ok(Ok(job)) = next else { return };
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        if job.queued_at.elapsed() > shared.max_wait {
            let _ = job.reply.send(Err(shared.busy()));
            continue;
        }
        shared.hashing.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let done = match &job.work {
            Work::Hash { password } => Done::Hashed(hash_new(&mut memory, params, password)),
            Work::Verify { stored, password } => Done::Verified(verify(&mut memory, stored, password)),
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ =
            shared.hash_micros.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| Some((avg * 7 + micros) / 8));
        shared.hashing.fetch_sub(1, Ordering::Relaxed);
        let _ = job.reply.send(Ok(done));
    }
}

/// One hash on the calling thread, outside the pool: the start-up's dummy hash (one buffer, once,
/// before the pool serves; so it cannot be refused as busy).
pub(crate) fn hash_here(params: &Params, password: &str) -> anyhow::Result<String> {
    let mut memory = vec![Block::default(); params.block_count()];
    hash_new(&mut memory, params, password).map_err(anyhow::Error::msg)
}

/// argon2id v19 of `password` with a fresh salt, into the thread's buffer; the PHC string is
/// the same as the `argon2` crate's own `hash_password` makes.
fn hash_new(memory: &mut [Block], params: &Params, password: &str) -> Result<String, String> {
    let mut raw_salt = [0u8; 16];
    rand::rng().fill(&mut raw_salt[..]);
    let salt = SaltString::encode_b64(&raw_salt).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    compute(memory, &argon2, params, password.as_bytes(), &raw_salt, &mut out)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(hash.to_string())
}

/// Recomputes `stored` (its own algorithm, version and parameters) and compares in constant time.
fn verify(memory: &mut [Block], stored: &str, password: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(hash.algorithm), Params::try_from(&hash)) else {
        return false;
    };
    let Ok(version) = hash.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    compute(memory, &argon2, &params, password.as_bytes(), salt, &mut out).is_ok()
        && Output::new(&out).is_ok_and(|computed| computed == expected)
}

fn compute(
    memory: &mut [Block],
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    if memory.len() < params.block_count() {
        // a stored hash made under a higher memory cost than today's (rare): its own buffer, once
        let mut own = vec![Block::default(); params.block_count()];
        return argon2.hash_password_into_with_memory(password, salt, out, &mut own).map_err(|e| e.to_string());
    }
    argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..]).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    fn cheap() -> Params {
        Params::new(64, 1, 1, None).unwrap()
    }

    fn pool(threads: usize, queue: usize) -> HashPool {
        HashPool::start(cheap(), HashPoolSize { threads, queue, max_wait: Duration::from_secs(10) }).unwrap()
    }

    #[test]
    fn hashes_are_the_argon2_crates_own() {
        let pool = pool(1, 1);
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, cheap());
        let ours = pool.hash("correct horse").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{ours}");
        assert!(argon2.verify_password(b"correct horse", &PasswordHash::new(&ours).unwrap()).is_ok());
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let theirs = argon2.hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(pool.verify(&theirs, "correct horse").unwrap());
        assert!(!pool.verify(&theirs, "correct horse!").unwrap());
    }

    #[test]
    fn verifies_hashes_of_other_costs_and_versions() {
        let pool = pool(1, 1);
        for (params, version) in [
            (Params::new(256, 2, 2, None).unwrap(), Version::V0x13),
            (Params::new(32, 3, 1, Some(16)).unwrap(), Version::V0x10),
        ] {
            let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
            let stored = Argon2::new(Algorithm::Argon2id, version, params).hash_password(b"pw", &salt).unwrap();
            assert!(pool.verify(&stored.to_string(), "pw").unwrap(), "{stored}");
            assert!(!pool.verify(&stored.to_string(), "pW").unwrap());
        }
        assert!(!pool.verify("not a hash", "pw").unwrap());
        assert!(!pool.verify("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$", "pw").unwrap());
    }

    #[test]
    fn a_reused_buffer_gives_the_same_results() {
        let pool = pool(1, 4);
        let first = pool.hash("one").unwrap();
        for _ in 0..5 {
            let _ = pool.hash("something else").unwrap();
            assert!(pool.verify(&first, "one").unwrap());
        }
    }

    #[test]
    fn admits_threads_plus_queue_then_refuses_until_a_place_frees() {
        let pool = pool(2, 3);
        let held: Vec<Admission> = (0..5).map(|_| pool.admit().unwrap()).collect();
        let busy = pool.admit().unwrap_err();
        assert!(busy.retry_after_secs >= 1);
        assert_eq!(pool.load().shed, 1);
        drop(held);
        let _again = pool.admit().expect("places free once admissions end");
    }

    #[test]
    fn a_job_that_waited_too_long_is_refused_not_hashed() {
        let pool = HashPool::start(cheap(), HashPoolSize { threads: 1, queue: 1, max_wait: Duration::ZERO }).unwrap();
        let error = pool.hash("pw").unwrap_err();
        assert!(error.downcast_ref::<Busy>().is_some(), "{error:#}");
        assert_eq!(pool.load(), Load { threads: 1, hashing: 0, queued: 0, shed: 1 });
    }

    #[test]
    fn many_callers_share_the_threads() {
        let pool = Arc::new(pool(2, 8));
        let stored = pool.hash("pw").unwrap();
        let (pool, stored) = (&pool, &stored);
        let answers: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..16).map(|i| s.spawn(move || pool.verify(stored, if i % 2 == 0 { "pw" } else { "no" }))).collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        assert_eq!(answers.iter().filter(|&&ok| ok).count(), 8);
    }
}
