//! The two ceilings `bench/run` compares flex-user against, measured in the same run:
//!
//! - `bench_ceilings hello ADDR`: a minimal actix-web handler (`GET /` → `hello`) with the same
//!   number of workers as flex-user, the most any page could be served at;
//! - `bench_ceilings argon2 N`: the median time of N argon2id hashes at the configured cost
//!   (`FLEX_USER_ARGON2_*`, as flex-user reads them) into one reused buffer, as flex-user's pool
//!   hashes; `cores / that` is the most sign-ins a second could be;
//! - `bench_ceilings argon2-parallel THREADS SECONDS`: hashes per second with THREADS threads
//!   hashing at once, each into its own buffer: what the cores really give together (they
//!   share caches and memory bandwidth, so this is below `THREADS / one hash's time`).
//!
//! An example, so `cargo test` builds it (the smoke run in CI needs no build of its own) and an
//! installed flex-user has one binary.

use std::time::Instant;

use actix_web::{App, HttpServer, web};
use argon2::{Algorithm, Argon2, Block, Params, Version};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["hello", addr] => hello(addr),
        ["argon2", n] => argon2_median(n.parse()?),
        ["argon2-parallel", threads, seconds] => argon2_parallel(threads.parse()?, seconds.parse()?),
        _ => anyhow::bail!("usage: bench_ceilings hello ADDR | argon2 N | argon2-parallel THREADS SECONDS"),
    }
}

#[actix_web::main]
async fn hello(addr: &str) -> anyhow::Result<()> {
    HttpServer::new(|| App::new().route("/", web::get().to(|| async { "hello" }))).bind(addr)?.run().await?;
    Ok(())
}

/// One hasher at the configured cost, with its own buffer, as a thread of flex-user's pool has.
struct Hasher {
    argon2: Argon2<'static>,
    memory: Vec<Block>,
}

impl Hasher {
    fn new() -> anyhow::Result<Hasher> {
        let cost = flex_user::config::Settings::from_env()?.hash_cost;
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, Some(32))
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let memory = vec![Block::default(); params.block_count()];
        Ok(Hasher { argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params), memory })
    }

    fn hash(&mut self, i: usize) {
        let mut out = [0u8; 32];
        let password = format!("password {i}");
        self.argon2
            .hash_password_into_with_memory(password.as_bytes(), b"a salt of 16 by", &mut out, &mut self.memory[..])
            .expect("argon2");
    }
}

/// Prints the median time of one hash, in ms.
fn argon2_median(n: usize) -> anyhow::Result<()> {
    let mut hasher = Hasher::new()?;
    let mut times: Vec<f64> = (0..n.max(1))
        .map(|i| {
            let start = Instant::now();
            hasher.hash(i);
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("{:.3}", times[times.len() / 2]);
    Ok(())
}

/// Prints the hashes per second that `threads` threads hashing at once achieve.
fn argon2_parallel(threads: usize, seconds: f64) -> anyhow::Result<()> {
    let start = Instant::now();
    let counts = std::thread::scope(|scope| -> anyhow::Result<Vec<usize>> {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(move || -> anyhow::Result<usize> {
                    let mut hasher = Hasher::new()?;
                    let mut n = 0;
                    while start.elapsed().as_secs_f64() < seconds {
                        hasher.hash(n);
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("hasher thread")).collect()
    })?;
    println!("{:.3}", counts.iter().sum::<usize>() as f64 / start.elapsed().as_secs_f64());
    Ok(())
}
