//! Enumeration safety and the hashing limit, measured on the real server (release build,
//! OWASP argon2 cost, SQLite). Run: `cargo bench --bench enumeration`; BENCHMARKS.md has a report.
//!
//! Figures are ratios within one run (this machine is shared and noisy): a known account's
//! failure against an unknown one's, and peak memory under a sign-in flood against what
//! unlimited hashing would take.

#[path = "../tests/integration/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::app::{Browser, spawn_app};
use common::{Backend, TestDb};

const OWASP: [(&str, &str); 3] =
    [("FLEX_USER_ARGON2_MEMORY_KIB", "19456"), ("FLEX_USER_ARGON2_ITERATIONS", "2"), ("FLEX_USER_IP_RATE_LIMIT", "0")];
const ROUNDS: usize = 40;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let app = spawn_app(&db, &OWASP);
    let browser = Browser::new(&app);
    browser
        .sign_up(&[("username", "known"), ("email", "known@example.org"), ("password", "correct horse battery")])
        .assert_redirect("/account");
    browser.post("/sign-out", &[]);

    // Interleaved, so drift in machine load hits every kind alike; the clock moves past the
    // sign-in backoff between rounds so every attempt is a real check.
    let kinds = ["known", "nobody", "-unparsable-"];
    let mut sign_in: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let reset_ids = ["known@example.org", "nobody@example.org"];
    let mut reset: Vec<Vec<Duration>> = vec![Vec::new(); reset_ids.len()];
    let mut wrong_code: Vec<Vec<Duration>> = vec![Vec::new(); reset_ids.len()];
    for round in 0..ROUNDS {
        for (i, who) in kinds.iter().enumerate() {
            let token = browser.token();
            let started = Instant::now();
            let page =
                browser.post_raw("/sign-in", &[("csrf_token", &token), ("identifier", who), ("password", "wrong")]);
            sign_in[i].push(started.elapsed());
            assert_eq!(page.status.as_u16(), 401, "{who}");
        }
        for (i, who) in reset_ids.iter().enumerate() {
            let fresh = Browser::new(&app);
            let token = fresh.token();
            let started = Instant::now();
            let page = fresh.post_raw("/password-reset", &[("csrf_token", &token), ("identifier", who)]);
            reset[i].push(started.elapsed());
            assert_eq!(page.status.as_u16(), 303);
            // a wrong code for the reset just asked for
            let started = Instant::now();
            let page = fresh.post_raw("/password-reset/verify", &[("csrf_token", &token), ("code", "000000")]);
            wrong_code[i].push(started.elapsed());
            assert_eq!(page.status.as_u16(), 422, "{who}");
        }
        // past every backoff, cooldown and daily cap, so each round is a first attempt
        app.clock.advance(chrono::Duration::days(1) + chrono::Duration::minutes(round as i64));
    }
    let m: Vec<Duration> = sign_in.into_iter().map(median).collect();
    let r: Vec<Duration> = reset.into_iter().map(median).collect();
    let w: Vec<Duration> = wrong_code.into_iter().map(median).collect();
    println!("sign-in failure, median of {ROUNDS}: known {:?}, unknown {:?}, unparsable {:?}", m[0], m[1], m[2]);
    println!(
        "  ratio unknown/known {:.2}, unparsable/known {:.2}",
        m[1].as_secs_f64() / m[0].as_secs_f64(),
        m[2].as_secs_f64() / m[0].as_secs_f64()
    );
    println!("password-reset request, median of {ROUNDS}: known {:?}, unknown {:?}", r[0], r[1]);
    println!("  ratio unknown/known {:.2}", r[1].as_secs_f64() / r[0].as_secs_f64());
    println!("wrong reset code, median of {ROUNDS}: known {:?}, unknown {:?}", w[0], w[1]);
    println!("  ratio unknown/known {:.2}", w[1].as_secs_f64() / w[0].as_secs_f64());

    // A flood: 64 sign-ins at once. With one hash per core at a time, peak memory grows by a
    // few argon2 blocks (19 MiB each), not 64 of them.
    let before = peak_rss_kib();
    let flood = 64;
    let browsers: Vec<Browser> = (0..flood).map(|_| Browser::new(&app)).collect();
    let tokens: Vec<String> = browsers.iter().map(|b| b.token()).collect();
    app.clock.advance(chrono::Duration::hours(2));
    let started = Instant::now();
    std::thread::scope(|s| {
        for (i, (b, t)) in browsers.iter().zip(&tokens).enumerate() {
            let who = format!("flood{i}");
            s.spawn(move || b.post_raw("/sign-in", &[("csrf_token", t), ("identifier", &who), ("password", "x")]));
        }
    });
    let elapsed = started.elapsed();
    let after = peak_rss_kib();
    let grew_mib = after.saturating_sub(before) as f64 / 1024.0;
    println!(
        "flood of {flood} sign-ins: {:.2?} ({:.0} hashes/s); peak RSS grew {grew_mib:.0} MiB, \
         {:.2} of the {:.0} MiB that {flood} simultaneous hashes would take",
        elapsed,
        flood as f64 / elapsed.as_secs_f64(),
        grew_mib / (flood as f64 * 19.0),
        flood as f64 * 19.0
    );
}
