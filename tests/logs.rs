//! What the logs say: sign-ins, failures, throttles, resets and identifier changes with user id
//! and IP, and never a password, a code or a session id (with the SMTP and webhook backends;
//! only the console backends print messages). Each line logged while answering a request
//! carries that request's span: method, path (never the query), request id, status, latency.

#[path = "integration/common/mod.rs"]
mod common;

use std::sync::Mutex;

use common::app::{Browser, spawn_app};
use common::log_capture::{LogBuffer, process_logs};
use common::{Backend, TestDb};
use diesel::connection::SimpleConnection as _;

on_both_databases!(a_failed_request_is_logged_with_its_request_id_and_path);

/// Everything this test binary logs.
fn logs() -> &'static LogBuffer {
    process_logs("info,flex_user=debug")
}

/// The value of `field=` in a log line (up to the next space or closing brace).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    Some(&rest[..rest.find([' ', '}']).unwrap_or(rest.len())])
}

#[test]
fn logs_tell_what_happened_and_hold_no_secret() {
    let buffer = logs();

    let db = TestDb::new(Backend::Sqlite).unwrap();
    let app = spawn_app(&db, &[]);
    let first = "first passphrase 1";
    let second = "second passphrase 2";
    let third = "third passphrase 3";

    let browser = Browser::new(&app);
    browser
        .sign_up(&[
            ("username", "logan"),
            ("email", "logan@example.org"),
            ("phone", "+12025550123"),
            ("password", first),
        ])
        .assert_redirect("/account");
    let email_code = app.email_code("logan@example.org", 0);
    let sms_code = app.sms_code("+12025550123", 0);
    browser.get("/account");
    browser.post("/verify/email", &[("code", &email_code)]).assert_redirect("/account");
    browser
        .post("/account", &[("username", "logan2"), ("email", "logan@example.org"), ("current_password", first)])
        .assert_redirect("/account");
    browser
        .post("/account/password", &[("current_password", first), ("new_password", second)])
        .assert_redirect("/account");
    let session = browser.cookie("flex_session").expect("a session");
    browser.post("/sign-out", &[]).assert_redirect("/");
    assert_eq!(browser.sign_in("logan2", "not the password").status.as_u16(), 401);
    assert_eq!(browser.sign_in("logan2", second).status.as_u16(), 429);
    app.clock.advance(chrono::Duration::minutes(2)); // past the resend cooldown of the sign-up code
    browser.get("/password-reset");
    browser.post("/password-reset", &[("identifier", "logan@example.org")]).assert_redirect("/password-reset/verify");
    // #1 is the notice of the password change
    let reset_code = app.email_code("logan@example.org", 2);
    browser.post("/password-reset/verify", &[("code", &reset_code)]).assert_redirect("/password-reset/new");
    browser.post("/password-reset/new", &[("new_password", third)]).assert_redirect("/sign-in");
    app.clock.advance(chrono::Duration::minutes(20));
    browser.sign_in("logan2", third).assert_redirect("/account");
    let csrf = browser.cookie("flex_csrf").unwrap();

    let logs = buffer.text();
    for event in [
        "event=\"sign_up\"",
        "event=\"verified\"",
        "event=\"identifiers_changed\"",
        "event=\"password_changed\"",
        "event=\"sign_out\"",
        "event=\"sign_in_failed\"",
        "event=\"sign_in_throttled\"",
        "event=\"password_reset_requested\"",
        "event=\"password_reset\"",
        "event=\"sign_in\"",
    ] {
        let line = logs.lines().find(|l| l.contains(event)).unwrap_or_else(|| panic!("no {event} in:\n{logs}"));
        assert!(line.contains(" ip=127.0.0.1"), "fields print as values: {line}");
        if !event.contains("failed") && !event.contains("throttled") && !event.contains("requested") {
            assert!(line.contains("user_id="), "{line}");
        }
    }
    assert!(!logs.contains("Some("), "optional fields print as values or not at all:\n{logs}");
    for secret in [first, second, third, &email_code, &sms_code, &reset_code, &session, &csrf] {
        assert!(!logs.contains(secret), "the logs hold a secret ({} chars)", secret.len());
    }
}

fn a_failed_request_is_logged_with_its_request_id_and_path(db: &TestDb) {
    // one backend at a time, so that this run's lines are the ones after `from`
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let buffer = logs();
    let app = spawn_app(db, &[]);
    let browser = Browser::new(&app);
    browser.sign_up(&[("username", "failing"), ("password", "a passphrase 4")]).assert_redirect("/account");
    let from = buffer.len();
    // break the database under the running server: the account page fails inside
    app.pool.get().unwrap().batch_execute("DROP TABLE otp_tokens").unwrap();
    let marker = "q7secretmarker";
    let page = browser.get(&format!("/account?next=/{marker}"));
    assert_eq!(page.status.as_u16(), 500);

    let logs = buffer.text()[from..].to_owned();
    let failed = logs
        .lines()
        .find(|l| l.contains("request failed") && l.contains("path=/account"))
        .unwrap_or_else(|| panic!("no line of the failed request in:\n{logs}"));
    assert!(failed.starts_with("ERROR"), "{failed}");
    assert!(failed.contains("method=GET"), "{failed}");
    assert!(failed.contains("otp_tokens"), "the cause is kept: {failed}");
    let id = field(failed, "request_id").unwrap_or_else(|| panic!("no request id: {failed}"));
    assert_eq!(id.len(), 36, "a UUID: {failed}");
    // the request's own closing line: same id, its status and latency
    let answered = logs
        .lines()
        .find(|l| l.contains("answered") && field(l, "request_id") == Some(id))
        .unwrap_or_else(|| panic!("no closing line for {id} in:\n{logs}"));
    assert_eq!(field(answered, "status"), Some("500"), "{answered}");
    assert_eq!(field(answered, "path"), Some("/account"), "{answered}");
    assert!(field(answered, "latency_ms").is_some_and(|ms| ms.parse::<u64>().is_ok()), "{answered}");
    // each request has its own id, and the span records the path without the query
    let all = buffer.text();
    let earlier = all[..from]
        .lines()
        .rev()
        .find(|l| l.contains("answered") && field(l, "path") == Some("/sign-up"))
        .and_then(|l| field(l, "request_id"));
    assert!(earlier.is_some_and(|other| other.len() == 36 && other != id), "the sign-up had its own request id");
    // a change is an info line; a page view that went well only a debug one (most of the traffic)
    let closing = |method: &str| {
        all[..from]
            .lines()
            .find(|l| {
                l.contains("answered")
                    && l.contains(&format!("method={method}"))
                    && field(l, "path") == Some("/sign-up")
            })
            .unwrap_or_else(|| panic!("no closing line of {method} /sign-up in:\n{all}"))
    };
    assert!(closing("POST").trim_start().starts_with("INFO"), "{}", closing("POST"));
    assert!(closing("GET").trim_start().starts_with("DEBUG"), "{}", closing("GET"));
    assert!(!all.contains(marker), "the query string is not logged");
}
