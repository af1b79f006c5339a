//! What an operator watches: every Prometheus metric's name and labels, in this one module, with
//! one function per event so that a call site is one line whatever its layer.
//!
//! Nothing is recorded until [`install`] runs, which `flex-user serve` does only when
//! `FLEX_USER_METRICS_BIND` is set: until then each function here is a no-op (the `metrics`
//! facade's default recorder). The recorder is process-wide, so several servers in one process
//! (the tests) share one set of metrics.
//!
//! Every label value comes from a closed set (a route pattern, a method, a status code, a
//! channel, a fixed reason), never from a request's raw path or an address, so the number of
//! series stays bounded.
//!
//! `::metrics` below is the facade crate; `crate::metrics` is this module.

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::accounts::Channel;

const HTTP_REQUESTS: &str = "flex_user_http_requests_total";
const HTTP_DURATION: &str = "flex_user_http_request_duration_seconds";
const SIGN_INS: &str = "flex_user_sign_ins_total";
const THROTTLE_REFUSALS: &str = "flex_user_throttle_refusals_total";
const CODES_SENT: &str = "flex_user_codes_sent_total";
const DELIVERY_FAILURES: &str = "flex_user_delivery_failures_total";
const OUTBOX_PENDING: &str = "flex_user_outbox_pending";
const OUTBOX_OLDEST: &str = "flex_user_outbox_oldest_pending_seconds";
const DB_POOL: &str = "flex_user_db_pool_connections";
const HASH_THREADS: &str = "flex_user_hash_threads";
const HASH_IN_FLIGHT: &str = "flex_user_hash_in_flight";
const HASH_QUEUED: &str = "flex_user_hash_queued";
const HASH_SHED: &str = "flex_user_hash_shed_total";

/// Request durations, in seconds: from a cached page (milliseconds) to an argon2 hash queued
/// behind others (seconds).
const DURATION_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often recorded histogram samples are folded into their buckets. Without it they would
/// pile up in memory between scrapes (the exporter leaves this to its caller).
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder on the first call (later calls, e.g. a second server in the
/// same process, get the same handle) and returns the handle that renders the text format.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), DURATION_BUCKETS)
            .expect("the buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            // another recorder was installed by someone else: ours would render nothing
            tracing::warn!("a metrics recorder is already installed: /metrics will show no samples");
        }
        describe();
        let upkeep = handle.clone();
        let started = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                upkeep.run_upkeep();
                std::thread::sleep(UPKEEP);
            }
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "metrics: cannot start the upkeep thread");
        }
        handle
    })
}

/// The `# HELP` lines.
fn describe() {
    describe_counter!(HTTP_REQUESTS, "Requests answered by the public site, by route pattern, method and status");
    describe_histogram!(HTTP_DURATION, "Time to answer a request of the public site, by route pattern and method");
    describe_counter!(SIGN_INS, "Sign-in attempts by result: signed_in, wrong, throttled");
    describe_counter!(THROTTLE_REFUSALS, "Requests refused with 429, by what was throttled");
    describe_counter!(CODES_SENT, "Messages carrying a one-time code delivered, by channel");
    describe_counter!(DELIVERY_FAILURES, "Failed delivery attempts (retried or given up), by channel");
    describe_gauge!(OUTBOX_PENDING, "Messages waiting in the outbox");
    describe_gauge!(OUTBOX_OLDEST, "Age of the oldest message waiting in the outbox (0 when none)");
    describe_gauge!(DB_POOL, "Database pool connections, idle or in use");
    describe_gauge!(HASH_THREADS, "Threads of the password hashing pool");
    describe_gauge!(HASH_IN_FLIGHT, "Passwords being hashed now");
    describe_gauge!(HASH_QUEUED, "Password hashes waiting for a thread");
    describe_counter!(HASH_SHED, "Requests answered 503 because the hashing queue was full");
}

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// One request answered by the public site. `route` is the matched route pattern
/// (`/verify/{channel}`) or [`UNMATCHED`], `method` one of a fixed set.
pub fn http_request(route: String, method: &'static str, status: u16, took: Duration) {
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string()).increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method).record(took.as_secs_f64());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInResult {
    SignedIn,
    Wrong,
    Throttled,
}

/// One sign-in attempt. A throttled one is also a [`Throttle::SignIn`] refusal.
pub fn sign_in(result: SignInResult) {
    let label = match result {
        SignInResult::SignedIn => "signed_in",
        SignInResult::Wrong => "wrong",
        SignInResult::Throttled => {
            throttle_refusal(Throttle::SignIn);
            "throttled"
        }
    };
    counter!(SIGN_INS, "result" => label).increment(1);
}

/// What a 429 refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Too many failed sign-ins for the identifier.
    SignIn,
    /// Too many wrong codes for an address being verified.
    Code,
    /// Too many wrong codes for a password reset.
    ResetCode,
    /// Too many wrong codes for a sign-in with a code.
    SignInCode,
    /// A new code asked for too soon or too often (the send limits).
    CodeSend,
    /// The per-IP limit on POSTs.
    IpLimit,
}

/// One request refused with 429.
pub fn throttle_refusal(what: Throttle) {
    let label = match what {
        Throttle::SignIn => "sign_in",
        Throttle::Code => "code",
        Throttle::ResetCode => "reset_code",
        Throttle::SignInCode => "sign_in_code",
        Throttle::CodeSend => "code_send",
        Throttle::IpLimit => "ip_limit",
    };
    counter!(THROTTLE_REFUSALS, "what" => label).increment(1);
}

fn channel_label(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Phone => "sms",
    }
}

/// A message carrying a code was delivered.
pub fn code_sent(channel: Channel) {
    counter!(CODES_SENT, "channel" => channel_label(channel)).increment(1);
}

/// One delivery attempt failed (it is retried, or given up when the message expires first).
pub fn delivery_failed(channel: Channel) {
    counter!(DELIVERY_FAILURES, "channel" => channel_label(channel)).increment(1);
}

/// The outbox as a scrape finds it.
pub fn record_outbox(pending: u64, oldest_pending: Duration) {
    gauge!(OUTBOX_PENDING).set(pending as f64);
    gauge!(OUTBOX_OLDEST).set(oldest_pending.as_secs_f64());
}

/// The database pool as a scrape finds it.
pub fn record_db_pool(idle: u32, in_use: u32) {
    gauge!(DB_POOL, "state" => "idle").set(idle);
    gauge!(DB_POOL, "state" => "in_use").set(in_use);
}

/// The password hashing pool as a scrape finds it; `shed_total` counts since the start.
pub fn record_hash_load(threads: usize, hashing: usize, queued: usize, shed_total: u64) {
    gauge!(HASH_THREADS).set(threads as f64);
    gauge!(HASH_IN_FLIGHT).set(hashing as f64);
    gauge!(HASH_QUEUED).set(queued as f64);
    counter!(HASH_SHED).absolute(shed_total);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `f` records, rendered by a recorder of its own (not the process's).
    fn rendered(f: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[test]
    fn names_and_labels() {
        let text = rendered(|| {
            sign_in(SignInResult::Throttled);
            code_sent(Channel::Phone);
            record_hash_load(2, 1, 3, 7);
            record_db_pool(4, 1);
        });
        for line in [
            r#"flex_user_sign_ins_total{result="throttled"} 1"#,
            r#"flex_user_throttle_refusals_total{what="sign_in"} 1"#,
            r#"flex_user_codes_sent_total{channel="sms"} 1"#,
            "flex_user_hash_threads 2",
            "flex_user_hash_in_flight 1",
            "flex_user_hash_queued 3",
            "flex_user_hash_shed_total 7",
            r#"flex_user_db_pool_connections{state="in_use"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
    }
}
