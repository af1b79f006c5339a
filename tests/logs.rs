//! What the logs say: sign-ins, failures, throttles, resets and identifier changes with user id
//! and IP, and never a password, a code or a session id (with the SMTP and webhook backends;
//! only the console backends print messages).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::app::{Browser, spawn_app};
use common::{Backend, TestDb};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_tell_what_happened_and_hold_no_secret() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info,flex_user=debug")
        .with_ansi(false)
        .without_time() // timestamps hold digit runs that could match a code by chance
        .with_writer(move || writer.clone())
        .init();

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
    browser.post("/password-reset", &[("identifier", "logan@example.org")]).assert_redirect("/password-reset/verify");
    let reset_code = app.email_code("logan@example.org", 1);
    browser.post("/password-reset/verify", &[("code", &reset_code)]).assert_redirect("/password-reset/new");
    browser.post("/password-reset/new", &[("new_password", third)]).assert_redirect("/sign-in");
    app.clock.advance(chrono::Duration::minutes(20));
    browser.sign_in("logan2", third).assert_redirect("/account");
    let csrf = browser.cookie("flex_csrf").unwrap();

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
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
        assert!(line.contains("ip=Some(127.0.0.1)"), "{line}");
        if !event.contains("failed") && !event.contains("throttled") && !event.contains("requested") {
            assert!(line.contains("user_id="), "{line}");
        }
    }
    for secret in [first, second, third, &email_code, &sms_code, &reset_code, &session, &csrf] {
        assert!(!logs.contains(secret), "the logs hold a secret ({} chars)", secret.len());
    }
}
