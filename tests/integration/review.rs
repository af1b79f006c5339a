//! Regression tests for the findings of the adversarial review (issue 6), one or more each,
//! on SQLite and PostgreSQL. Each failed on the build before its fix (see SECURITY.md).

use std::sync::Barrier;

use crate::common::app::{Browser, Page, TestApp};
use crate::common::flows::*;
use crate::common::{TestDb, at_once};
use diesel::prelude::*;
use flex_user::clock::Clock as _;
use flex_user::db::schema::{outbox, throttles};
use reqwest::StatusCode;

on_both_databases!(
    a_pending_reset_is_void_once_the_password_changes,
    a_proven_reset_is_void_once_the_password_changes,
    a_proven_reset_is_void_once_its_channel_is_removed,
    a_proven_reset_is_void_once_another_reset_completes,
    an_abandoned_reset_verifies_nothing,
    concurrent_sign_ins_cannot_pass_an_open_window,
    unknown_numbers_do_not_use_up_the_sms_budget,
    the_sms_hourly_limit_holds_under_concurrency,
    reset_backoff_does_not_link_identifiers,
    proving_a_reset_code_renews_the_session_id,
    a_verify_code_does_not_prove_a_reset,
    a_reset_code_does_not_verify_the_address,
    a_proof_sets_the_password_once_under_concurrency,
    concurrent_reset_codes_are_checked_one_per_window,
);

/// Requests a reset for `identifier` and proves it with the `nth` email code to `to`.
fn proven_reset<'a>(app: &'a TestApp, identifier: &str, to: &str, nth: usize) -> Browser<'a> {
    let browser = request_reset(app, identifier);
    browser
        .post("/password-reset/verify", &[("code", &mailed_code(app, to, nth))])
        .assert_redirect("/password-reset/new");
    browser
}

/// A proven reset that is void: the form is not offered and posting it changes nothing.
fn assert_void(reset: &Browser<'_>, app: &TestApp, password_that_still_works: &str) {
    reset.get("/password-reset/new").assert_redirect("/password-reset");
    reset
        .post("/password-reset/new", &[("new_password", "attacker's new password")])
        .assert_redirect("/password-reset");
    assert!(app.accounts.authenticate("alice", "attacker's new password").unwrap().is_none());
    assert!(app.accounts.authenticate("alice", password_that_still_works).unwrap().is_some());
}

/// `POST /account/password` as the signed-in owner.
fn change_password(owner: &Browser<'_>) {
    owner
        .post("/account/password", &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD)])
        .assert_redirect("/account");
}

// Finding 1: a proven (or pending) reset outlives recovery of the account.

fn a_pending_reset_is_void_once_the_password_changes(db: &TestDb) {
    let app = spawn(db, &[]);
    let owner = alice(&app);
    past_cooldown(&app);
    let attacker = request_reset(&app, ALICE_EMAIL);
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    change_password(&owner);
    // the code is right, but the reset it belonged to is void: answered as a wrong code
    let page = attacker.post("/password-reset/verify", &[("code", &code)]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", page.body);
    assert_void(&attacker, &app, NEW_PASSWORD);
}

fn a_proven_reset_is_void_once_the_password_changes(db: &TestDb) {
    let app = spawn(db, &[]);
    let owner = alice(&app);
    past_cooldown(&app);
    let attacker = proven_reset(&app, ALICE_EMAIL, ALICE_EMAIL, 1);
    change_password(&owner);
    assert_void(&attacker, &app, NEW_PASSWORD);
}

/// Also finding 10: the old build then removed the phone (the email was unverified), which would
/// have left no identifier, and answered 500.
fn a_proven_reset_is_void_once_its_channel_is_removed(db: &TestDb) {
    let app = spawn(db, &[]);
    let owner = Browser::new(&app);
    owner
        .sign_up(&[("email", ALICE_EMAIL), ("phone", ALICE_PHONE), ("password", PASSWORD)])
        .assert_redirect("/account");
    app.email_to(ALICE_EMAIL, 0);
    past_cooldown(&app);
    let attacker = proven_reset(&app, ALICE_EMAIL, ALICE_EMAIL, 1);
    owner.get("/account");
    owner.post("/account", &[("email", ""), ("current_password", PASSWORD)]).assert_redirect("/account");

    attacker.get("/password-reset/new").assert_redirect("/password-reset");
    let page = attacker.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]);
    page.assert_redirect("/password-reset");
    assert!(app.accounts.authenticate(ALICE_PHONE, PASSWORD).unwrap().is_some(), "nothing changed");
    assert!(user(&app, ALICE_PHONE).unwrap().phone.is_some());
}

fn a_proven_reset_is_void_once_another_reset_completes(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    let attacker = proven_reset(&app, "alice", ALICE_EMAIL, 1);
    past_cooldown(&app);
    let owner = proven_reset(&app, ALICE_EMAIL, ALICE_EMAIL, 2);
    owner.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]).assert_redirect("/sign-in");
    assert_void(&attacker, &app, NEW_PASSWORD);
}

// Finding 2: an abandoned reset verified its channel, so a later reset kept the other addresses.

fn an_abandoned_reset_verifies_nothing(db: &TestDb) {
    let app = spawn(db, &[]);
    // someone signed up with alice's email and their own phone
    Browser::new(&app)
        .sign_up(&[("email", ALICE_EMAIL), ("phone", OTHER_PHONE), ("password", PASSWORD)])
        .assert_redirect("/account");
    app.email_to(ALICE_EMAIL, 0);
    past_cooldown(&app);
    // alice proves a reset code and walks away
    proven_reset(&app, ALICE_EMAIL, ALICE_EMAIL, 1);
    let id = user(&app, ALICE_EMAIL).unwrap().id;
    assert!(!app.accounts.email_token(id).unwrap().unwrap().state.verified, "a proof alone verifies nothing");
    // later she completes one: her email was never verified before, so the phone goes
    past_cooldown(&app);
    let reset = proven_reset(&app, ALICE_EMAIL, ALICE_EMAIL, 2);
    reset.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]).assert_redirect("/sign-in");
    let account = user(&app, ALICE_EMAIL).unwrap();
    assert!(account.phone.is_none(), "the phone nobody proved with this email is removed");
    assert!(app.accounts.email_token(id).unwrap().unwrap().state.verified);
    assert!(user(&app, OTHER_PHONE).is_none());
}

// Finding 3: concurrent guesses passed the sign-in throttle's check together.

fn failures(app: &TestApp) -> Vec<i32> {
    let mut conn = app.pool.get().unwrap();
    throttles::table.select(throttles::failures).load(&mut *conn).unwrap()
}

fn concurrent_sign_ins_cannot_pass_an_open_window(db: &TestDb) {
    // an argon2 cost that makes each check take a while, and two instances on one database
    let slow = [("FLEX_USER_ARGON2_MEMORY_KIB", "65536"), ("FLEX_USER_ARGON2_ITERATIONS", "3")];
    let app = spawn(db, &slow);
    let other = spawn(db, &slow);
    other.clock.set(app.clock.now());
    alice(&app);
    let first = Browser::new(&app).sign_in("alice", "wrong password 0");
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert_eq!(failures(&app), vec![1]);
    // the clocks stand still: the window of that failure stays open for everyone, right or wrong
    for instance in [&app, &other] {
        let right = Browser::new(instance).sign_in("alice", PASSWORD);
        assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "{}", right.body);
    }

    // Past it: a burst of wrong guesses on one instance, and while they are being checked, the
    // right password on the other. The first guess claims the turn and opens the next window;
    // every other request is refused, the right password included.
    for instance in [&app, &other] {
        instance.clock.advance(secs(1));
    }
    let guessers: Vec<Browser<'_>> = (0..6).map(|_| Browser::new(&app)).collect();
    let owner = Browser::new(&other);
    for browser in guessers.iter().chain([&owner]) {
        browser.get("/sign-in"); // each holds its CSRF cookie and the form before the burst
    }
    let barrier = Barrier::new(guessers.len() + 1);
    let (wrong, right): (Vec<Page>, Page) = std::thread::scope(|scope| {
        let handles: Vec<_> = guessers
            .iter()
            .enumerate()
            .map(|(i, browser)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    browser.sign_in("alice", &format!("wrong password {i}"))
                })
            })
            .collect();
        let right = scope.spawn(|| {
            barrier.wait();
            std::thread::sleep(std::time::Duration::from_millis(50));
            owner.sign_in("alice", PASSWORD)
        });
        (handles.into_iter().map(|h| h.join().unwrap()).collect(), right.join().unwrap())
    });
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "nothing succeeds inside a window");
    let statuses: Vec<StatusCode> = wrong.iter().map(|p| p.status).collect();
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(checked, 1, "one guess per window: {statuses:?}");
    assert!(statuses.iter().all(|s| [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(s)));
    assert_eq!(failures(&app), vec![2], "the checked guess counts");
}

// Finding 4 and 11: the SMS budget of the deployment.

fn sms_rows(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    outbox::table.filter(outbox::channel.eq("phone")).count().get_result(&mut *conn).unwrap()
}

fn unknown_numbers_do_not_use_up_the_sms_budget(db: &TestDb) {
    let app = spawn(db, &[("FLEX_USER_SMS_HOURLY_LIMIT", "3")]);
    for n in 0..6 {
        request_reset(&app, &format!("+1202555{:04}", 7000 + n));
    }
    assert_eq!(sms_rows(&app), 0);
    Browser::new(&app).sign_up(&[("phone", ALICE_PHONE), ("password", PASSWORD)]).assert_redirect("/account");
    assert!(texted_code(&app, ALICE_PHONE, 0).len() == 6, "a real SMS still goes out");
}

fn the_sms_hourly_limit_holds_under_concurrency(db: &TestDb) {
    let app = spawn(db, &[("FLEX_USER_SMS_HOURLY_LIMIT", "5")]);
    let phones: Vec<String> = (0..16).map(|n| format!("+1202555{:04}", 8000 + n)).collect();
    for phone in &phones {
        let new = flex_user::NewUser::new().phone(flex_user::domain::Phone::parse(phone, None).unwrap());
        app.accounts.create_user(new.password(PASSWORD)).unwrap();
    }
    let browsers: Vec<Browser<'_>> = phones.iter().map(|_| Browser::new(&app)).collect();
    let tokens: Vec<String> = browsers.iter().map(|b| b.get("/password-reset").csrf_token().unwrap()).collect();
    let pages = at_once(phones.len(), |i| {
        browsers[i].post_raw("/password-reset", &[("csrf_token", &tokens[i]), ("identifier", &phones[i])])
    });
    for page in pages {
        page.assert_redirect("/password-reset/verify");
    }
    assert_eq!(sms_rows(&app), 5, "exactly the hourly limit is queued, never more");
}

// Finding 6: the reset backoff linked a username and an email of one account.

fn reset_backoff_does_not_link_identifiers(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    for (first, second) in [("alice", ALICE_EMAIL), ("nobody", "nobody@example.org")] {
        let one = request_reset(&app, first);
        let other = request_reset(&app, second);
        let page = one.post("/password-reset/verify", &[("code", "000000")]);
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        // the other identifier's window is its own, whether or not the two are one account
        let page = other.post("/password-reset/verify", &[("code", "000000")]);
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{first} / {second}: {}", page.body);
        app.clock.advance(secs(5));
    }
}

// Finding 7: the session id was not renewed when a reset code was proven.

fn proving_a_reset_code_renews_the_session_id(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    let reset = request_reset(&app, ALICE_EMAIL);
    let before = reset.copy();
    let old_id = reset.cookie("flex_session").expect("a session");
    reset
        .post("/password-reset/verify", &[("code", &mailed_code(&app, ALICE_EMAIL, 1))])
        .assert_redirect("/password-reset/new");
    assert_ne!(reset.cookie("flex_session").expect("a session"), old_id, "a new session id");
    // the id from before the proof does not carry it
    before.get("/password-reset/new").assert_redirect("/password-reset");
    before.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]).assert_redirect("/password-reset");
    assert!(app.accounts.authenticate("alice", PASSWORD).unwrap().is_some());
}

// Finding 8: codes were not bound to their purpose.

fn a_verify_code_does_not_prove_a_reset(db: &TestDb) {
    let app = spawn(db, &[]);
    let owner = alice(&app);
    past_cooldown(&app);
    let reset = request_reset(&app, ALICE_EMAIL);
    mailed_code(&app, ALICE_EMAIL, 1);
    past_cooldown(&app);
    // the owner asks for a verification code, which replaces the reset code
    owner.post("/verify/email/send", &[]).assert_redirect("/verify/email");
    let verify_code = mailed_code(&app, ALICE_EMAIL, 2);
    let page = reset.post("/password-reset/verify", &[("code", &verify_code)]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", page.body);
    reset.get("/password-reset/new").assert_redirect("/password-reset");
    // and it still verifies the address, as it was sent to
    app.clock.advance(secs(2));
    owner.post("/verify/email", &[("code", &verify_code)]).assert_redirect("/account");
}

fn a_reset_code_does_not_verify_the_address(db: &TestDb) {
    let app = spawn(db, &[]);
    let owner = alice(&app);
    past_cooldown(&app);
    request_reset(&app, ALICE_EMAIL);
    let reset_code = mailed_code(&app, ALICE_EMAIL, 1);
    let page = owner.post("/verify/email", &[("code", &reset_code)]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", page.body);
    let id = user(&app, "alice").unwrap().id;
    assert!(!app.accounts.email_token(id).unwrap().unwrap().state.verified);
}

// Finding 9: two concurrent completions of one proof both set the password.

fn a_proof_sets_the_password_once_under_concurrency(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    let reset = proven_reset(&app, ALICE_EMAIL, ALICE_EMAIL, 1);
    let token = reset.token();
    let passwords: Vec<String> = (0..8).map(|n| format!("{NEW_PASSWORD} {n}")).collect();
    let pages = at_once(passwords.len(), |i| {
        reset.post_raw("/password-reset/new", &[("csrf_token", &token), ("new_password", &passwords[i])])
    });
    let done: Vec<usize> = (0..pages.len()).filter(|&i| pages[i].location() == Some("/sign-in")).collect();
    assert_eq!(
        done.len(),
        1,
        "{:?}",
        pages.iter().map(|p| (p.status, p.location().map(str::to_owned))).collect::<Vec<_>>()
    );
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        if i != done[0] {
            assert_eq!(page.location(), Some("/password-reset"));
        }
    }
    let works: Vec<&String> =
        passwords.iter().filter(|p| app.accounts.authenticate("alice", p).unwrap().is_some()).collect();
    assert_eq!(works, vec![&passwords[done[0]]], "the one that answered /sign-in is the password now");
}

// Races on the reset backoff: concurrent code checks for one typed identifier are checked one
// per window, for a known account and an unknown one alike, and the right code sent among wrong
// ones never succeeds inside the window that one of them opened.

fn concurrent_reset_codes_are_checked_one_per_window(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    for identifier in ["alice", "nobody"] {
        let sessions: Vec<Browser<'_>> = (0..8).map(|_| request_reset(&app, identifier)).collect();
        let tokens: Vec<String> = sessions.iter().map(Browser::token).collect();
        let pages = at_once(sessions.len(), |i| {
            sessions[i].post_raw("/password-reset/verify", &[("csrf_token", &tokens[i]), ("code", "000000")])
        });
        let statuses: Vec<StatusCode> = pages.iter().map(|p| p.status).collect();
        let checked = statuses.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count();
        assert_eq!(checked, 1, "{identifier}: one check per window: {statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 7, "{identifier}");
        app.clock.advance(secs(5));
    }
    // the right code inside the window of a wrong one is refused too
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    let (wrong, right) = (request_reset(&app, "alice"), request_reset(&app, "alice"));
    let page = wrong.post("/password-reset/verify", &[("code", "000000")]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let page = right.post("/password-reset/verify", &[("code", &code)]);
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    app.clock.advance(secs(3));
    right.post("/password-reset/verify", &[("code", &code)]).assert_redirect("/password-reset/new");
}
