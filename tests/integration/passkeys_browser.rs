//! Passkeys end to end in headless Chromium with chromedriver's WebDriver virtual authenticator
//! (CTAP2, internal transport, resident keys, user verification): add a passkey, see it listed,
//! sign out, sign in with it alone, use it as the second step after the password, remove it, and
//! see the removed passkey refused; on SQLite and PostgreSQL. The site is reached at
//! `http://localhost:PORT`, its public URL (the relying party id is `localhost`).

use std::time::{Duration, Instant};

use flex_user::NewUser;
use flex_user::accounts::activity::{Event, Factor, SignInMethod};
use flex_user::domain::Username;
use serde_json::json;

use crate::common::app::TestApp;
use crate::common::flows::{PASSWORD, spawn, user};
use crate::common::{Backend, TestDb};
use crate::two_factor_browser::Driver;

impl Driver {
    /// Waits (up to 20 s) until the element is shown: the script removes `hidden` once it sees
    /// that the browser supports passkeys.
    fn shown(&self, css: &str) {
        let id = self.find(css);
        let until = Instant::now() + Duration::from_secs(20);
        while self.call("GET", &format!("/element/{id}/displayed"), None) != json!(true) {
            assert!(Instant::now() < until, "{css} never shown");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 20 s) for the element's text to hold `part`, and returns it.
    fn text_with(&self, css: &str, part: &str) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text(css);
            if text.contains(part) || Instant::now() > until {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A virtual authenticator as a phone's or laptop's built-in one.
    fn add_authenticator(&self) -> String {
        let answer = self.call(
            "POST",
            "/webauthn/authenticator",
            Some(json!({"protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                        "hasUserVerification": true, "isUserVerified": true})),
        );
        answer.as_str().expect("an authenticator id").to_owned()
    }

    fn credentials(&self, authenticator: &str) -> usize {
        self.call("GET", &format!("/webauthn/authenticator/{authenticator}/credentials"), None)
            .as_array()
            .map_or(0, Vec::len)
    }

    fn sign_out(&self, app: &TestApp) {
        self.click(".site-nav__signout button");
        // signed out (on the home page) before the next page is asked for
        let home = format!("{}/", localhost(app));
        assert_eq!(self.arrive(&home), home);
    }
}

/// The site's public origin in these tests.
fn localhost(app: &TestApp) -> String {
    app.base.replace("127.0.0.1", "localhost")
}

fn events(app: &TestApp, user_id: i64) -> Vec<Event> {
    app.flows.activity_of(user_id, 0, 100).unwrap().entries.into_iter().map(|e| e.event).collect()
}

fn add_sign_in_second_step_remove(backend: Backend) {
    let Some(driver) = Driver::start() else { return };
    let Some(db) = TestDb::new(backend) else { return };
    let app = spawn(&db, &[("FLEX_USER_PUBLIC_URL", "http://localhost:{port}")]);
    app.accounts.create_user(NewUser::new().username(Username::parse("alice").unwrap()).password(PASSWORD)).unwrap();
    let alice = user(&app, "alice").unwrap();
    let site = localhost(&app);
    let at = |path: &str| format!("{site}{path}");
    let authenticator = driver.add_authenticator();

    // signed in with the password, she adds a passkey: her first second factor, so recovery codes
    driver.go(&at("/sign-in"));
    driver.type_into("#identifier", "alice");
    driver.type_into("#password", PASSWORD);
    driver.click("form[action='/sign-in'] button[type='submit']");
    assert!(driver.arrive("/account").ends_with("/account"));
    driver.go(&at("/account/two-factor"));
    driver.shown("#passkey-add");
    driver.type_into("#passkey-name", "Laptop");
    driver.type_into("#passkey-add-password", PASSWORD);
    driver.click("#passkey-add");
    let url = driver.arrive("/account/two-factor/recovery-codes");
    assert!(url.ends_with("/account/two-factor/recovery-codes"), "{url}");
    assert_eq!(driver.count(".recovery-code"), 10);
    assert_eq!(driver.credentials(&authenticator), 1, "a resident credential on the authenticator");

    // listed, with when it was added and that it was never used
    driver.go(&at("/account/two-factor"));
    assert_eq!(driver.text(".passkey__name"), "Laptop");
    assert!(driver.text(".passkey .facts").contains("Never"));
    assert!(events(&app, alice.id).contains(&Event::SecondFactorAdded(Factor::Passkey)));

    // signed out, she signs in with the passkey alone
    driver.sign_out(&app);
    driver.go(&at("/sign-in"));
    driver.shown("#passkey-sign-in");
    driver.click("#passkey-sign-in");
    let url = driver.arrive("/account");
    assert!(url.ends_with("/account"), "{url}: {}", driver.text("#passkey-sign-in-status"));
    assert!(driver.text(".site-nav__who").contains("alice"));
    assert_eq!(events(&app, alice.id).first(), Some(&Event::SignedIn(SignInMethod::Passkey)));
    driver.go(&at("/account/two-factor"));
    assert!(!driver.text(".passkey .facts").contains("Never"), "its last use is shown");

    // and from the identifier field's autofill (conditional mediation: the virtual authenticator
    // answers as soon as the browser asks)
    driver.sign_out(&app);
    driver.go(&at("/sign-in?next=/account/sessions"));
    driver.shown("#passkey-sign-in");
    driver.click("#identifier");
    let url = driver.arrive("/account/sessions");
    assert!(url.ends_with("/account/sessions"), "{url}");

    // the password asks for the second step; the passkey gives it (the fields filled without
    // focusing the identifier, whose autofill would sign in with the passkey at once)
    driver.sign_out(&app);
    driver.go(&at("/sign-in"));
    driver.shown("#passkey-sign-in");
    driver.call(
        "POST",
        "/execute/sync",
        Some(json!({"script": "document.getElementById('identifier').value = arguments[0]; \
                               document.getElementById('password').value = arguments[1];",
                    "args": ["alice", PASSWORD]})),
    );
    driver.click("form[action='/sign-in'] button[type='submit']");
    let url = driver.arrive("/sign-in/two-factor");
    assert!(url.ends_with("/sign-in/two-factor"), "{url}");
    driver.shown("#passkey-second-factor");
    driver.click("#passkey-second-factor");
    let url = driver.arrive("/account");
    assert!(url.ends_with("/account"), "{url}: {}", driver.text("#passkey-second-factor-status"));
    assert!(driver.text(".site-nav__who").contains("alice"));

    // removed with the password; the recovery codes go with the last factor
    driver.go(&at("/account/two-factor"));
    driver.type_into("form.passkey__remove input[name='current_password']", PASSWORD);
    driver.click("form.passkey__remove button[type='submit']");
    assert!(driver.arrive("/account/two-factor").ends_with("/account/two-factor"));
    assert_eq!(driver.count(".passkey"), 0);
    assert_eq!(app.flows.two_factor_status(alice.id).unwrap().recovery_codes_left, 0);
    assert!(events(&app, alice.id).contains(&Event::SecondFactorRemoved(Factor::Passkey)));

    // the authenticator still holds it, and the site refuses it
    driver.sign_out(&app);
    driver.go(&at("/sign-in"));
    driver.shown("#passkey-sign-in");
    driver.click("#passkey-sign-in");
    let status = driver.text_with("#passkey-sign-in-status", "did not sign you in");
    assert!(status.contains("did not sign you in"), "{status}");
    assert!(driver.url().ends_with("/sign-in"));
    assert_eq!(driver.count(".site-nav__who"), 0, "not signed in");
    assert_eq!(events(&app, alice.id).first(), Some(&Event::SignedOut), "no sign-in");
}

#[test]
fn passkeys_in_chromium_on_sqlite() {
    add_sign_in_second_step_remove(Backend::Sqlite);
}

#[test]
fn passkeys_in_chromium_on_postgres() {
    add_sign_in_second_step_remove(Backend::Postgres);
}
