//! `GET /metrics` on `FLEX_USER_METRICS_BIND`, apart from the site: what an operator watches
//! moves with what happens, in the Prometheus text format; the site never answers it, and
//! without the variable nothing serves it.
//!
//! The recorder is process-wide and other tests run beside these, so counters are compared
//! before and after (they can only have moved more), never to exact values.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::cli::{Server, flex_user, free_port, get, one_line_failure, run};
use crate::common::TestDb;
use crate::common::app::{Browser, TestApp};
use crate::common::flows::{ALICE_EMAIL, PASSWORD, alice, spawn};

on_both_databases!(metrics_follow_sign_ins_codes_and_requests, without_the_variable_nothing_serves_metrics);

/// One sample line: `name{label="value",…} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format, failing on any line that is neither a `# HELP`/`# TYPE` comment nor a
/// sample.
fn parse(text: &str) -> Vec<Sample> {
    let is_name = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name, rest) = (words.next(), words.next().unwrap_or_default(), words.next());
            assert!(is_name(name), "metric name in {line:?}");
            match kind {
                Some("HELP") => {}
                Some("TYPE") => {
                    assert!(matches!(rest, Some("counter" | "gauge" | "histogram" | "summary" | "untyped")), "{line:?}")
                }
                _ => panic!("not a HELP or TYPE line: {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let labels = body
                    .split(',')
                    .map(|pair| {
                        let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("label {pair:?}: {line:?}"));
                        let value = quoted.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        assert!(is_name(key) && value.is_some(), "label {pair:?} in {line:?}");
                        (key.to_owned(), value.unwrap().to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        assert!(is_name(name), "metric name in {line:?}");
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    samples
}

/// The value of the one series `name{labels}` (exactly those labels), 0 when it is absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.iter().find(|s| s.name == name && s.labels == wanted).map_or(0.0, |s| s.value)
}

/// Scrapes the app's metrics address, checking the answer's type and format.
fn scrape(app: &TestApp) -> Vec<Sample> {
    let base = app.metrics.as_deref().expect("the app serves metrics");
    let response = reqwest::blocking::get(format!("{base}/metrics")).expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&response.text().unwrap())
}

fn metrics_follow_sign_ins_codes_and_requests(db: &TestDb) {
    let app = spawn(db, &[("FLEX_USER_METRICS_BIND", "127.0.0.1:0")]);
    let before = scrape(&app);
    let moved = |after: &[Sample], name: &str, labels: &[(&str, &str)]| {
        value(after, name, labels) - value(&before, name, labels)
    };

    // a sign-up with an email and a phone (a code sent to each), then sign-ins right, wrong,
    // and throttled (the wrong one opened a one-second window)
    let browser = alice(&app);
    browser.get("/verify/email");
    browser.post("/sign-out", &[]).assert_redirect("/");
    Browser::new(&app).sign_in(ALICE_EMAIL, PASSWORD).assert_redirect("/account");
    assert_eq!(Browser::new(&app).sign_in(ALICE_EMAIL, "wrong password").status, StatusCode::UNAUTHORIZED);
    assert_eq!(Browser::new(&app).sign_in(ALICE_EMAIL, PASSWORD).status, StatusCode::TOO_MANY_REQUESTS);
    // the site itself never answers /metrics
    assert_eq!(Browser::new(&app).get("/metrics").status, StatusCode::NOT_FOUND);

    // `alice` waited for both codes to arrive; the worker counts each right after, so wait for that
    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        let after = scrape(&app);
        let sent = |channel| moved(&after, "flex_user_codes_sent_total", &[("channel", channel)]);
        if (sent("email") >= 1.0 && sent("sms") >= 1.0) || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for channel in ["email", "sms"] {
        assert!(moved(&after, "flex_user_codes_sent_total", &[("channel", channel)]) >= 1.0, "{channel} code");
    }
    for result in ["signed_in", "wrong", "throttled"] {
        assert!(moved(&after, "flex_user_sign_ins_total", &[("result", result)]) >= 1.0, "sign-in {result}");
    }
    assert!(moved(&after, "flex_user_throttle_refusals_total", &[("what", "sign_in")]) >= 1.0);

    // requests by route pattern, never by raw path
    let requests = |route, method, status| {
        moved(&after, "flex_user_http_requests_total", &[("route", route), ("method", method), ("status", status)])
    };
    assert!(requests("/sign-in", "POST", "303") >= 1.0);
    assert!(requests("/sign-in", "POST", "401") >= 1.0);
    assert!(requests("/sign-in", "POST", "429") >= 1.0);
    assert!(requests("/sign-up", "GET", "200") >= 1.0);
    assert!(requests("/verify/{channel}", "GET", "200") >= 1.0);
    assert!(requests("unmatched", "GET", "404") >= 1.0, "/metrics on the site");
    assert!(
        moved(&after, "flex_user_http_request_duration_seconds_count", &[("route", "/sign-in"), ("method", "POST")])
            >= 3.0
    );
    for sample in after.iter().filter(|s| s.name.starts_with("flex_user_http_")) {
        let route = &sample.labels["route"];
        assert!(route != "/verify/email" && route != "/metrics", "a raw path as a label: {sample:?}");
    }

    // read at scrape time
    for gauge in ["flex_user_outbox_pending", "flex_user_outbox_oldest_pending_seconds"] {
        assert!(after.iter().any(|s| s.name == gauge), "{gauge}");
    }
    let pool = |state| value(&after, "flex_user_db_pool_connections", &[("state", state)]);
    assert!(pool("idle") + pool("in_use") >= 1.0, "the pool has connections");

    // the metrics address serves /metrics and nothing else
    let base = app.metrics.as_deref().unwrap();
    for path in ["/", "/healthz", "/sign-in"] {
        let status = reqwest::blocking::get(format!("{base}{path}")).unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} on the metrics address");
    }
}

fn without_the_variable_nothing_serves_metrics(db: &TestDb) {
    let app = spawn(db, &[]);
    assert!(app.metrics.is_none(), "no metrics listener without FLEX_USER_METRICS_BIND");
    assert_eq!(Browser::new(&app).get("/metrics").status, StatusCode::NOT_FOUND);
}

/// `flex-user serve` itself: the site on one address, `/metrics` on the other.
#[test]
fn serve_answers_metrics_on_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let (site, metrics): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{}", free_port()).parse().unwrap(), format!("127.0.0.1:{}", free_port()).parse().unwrap());
    let mut cmd = flex_user(&url, dir.path());
    cmd.env("FLEX_USER_BIND", site.to_string()).env("FLEX_USER_METRICS_BIND", metrics.to_string());
    let mut server = Server(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        // the site answered once, so its request is counted
        if get(site, "/healthz").is_some()
            && let Some(response) = get(metrics, "/metrics")
        {
            break response;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").expect("a body") + 4..];
    let samples = parse(body);
    assert!(
        value(
            &samples,
            "flex_user_http_requests_total",
            &[("route", "/healthz"), ("method", "GET"), ("status", "200")]
        ) >= 1.0,
        "{body}"
    );
    assert!(get(site, "/metrics").unwrap().starts_with("HTTP/1.1 404"), "not on the site");

    let _ = server.0.kill();
    let mut log = String::new();
    server.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains(&format!("serving metrics on http://{metrics}/metrics")), "the address is logged: {log}");
}

/// A metrics address that cannot be had is a one-line start-up failure naming the variable.
#[test]
fn a_taken_metrics_address_is_a_one_line_failure() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = flex_user(&url, dir.path());
    cmd.env("FLEX_USER_BIND", "127.0.0.1:0").env("FLEX_USER_METRICS_BIND", taken.local_addr().unwrap().to_string());
    let line = one_line_failure(&run(cmd, ""));
    assert!(line.starts_with("FLEX_USER_METRICS_BIND: cannot listen on"), "{line}");
    let mut cmd = flex_user(&url, dir.path());
    cmd.env("FLEX_USER_METRICS_BIND", "9100");
    assert!(one_line_failure(&run(cmd, "")).starts_with("FLEX_USER_METRICS_BIND: "));
}
