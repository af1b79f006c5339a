//! Passkeys over HTTP without a browser, on SQLite and PostgreSQL: the JSON calls answered by a
//! software authenticator (`common::authenticator`, real WebAuthn messages checked by
//! webauthn-rs), the pages' buttons and forms, the remove route, the rules passkeys share with
//! every second factor (recovery codes, the operator's reset, the unverified-channel rule,
//! activity and notices), and the ceremonies' guarantees: a challenge is used once and expires,
//! a counter that went back and another origin are refused.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestDb;
use crate::common::app::{Browser, Page, TestApp};
use crate::common::authenticator::SoftAuthenticator;
use crate::common::flows::{
    ALICE_EMAIL, NEW_PASSWORD, PASSWORD, alice, assert_status, mailed_code, queued, reset_through_email, secs, spawn,
    user,
};
use flex_user::accounts::activity::{Event, Factor, SignInMethod};

on_both_databases!(
    add_list_and_remove_with_the_rules_of_factors,
    sign_in_alone_and_as_the_second_step,
    a_challenge_is_used_once_and_expires,
    a_counter_that_went_back_is_refused,
    another_origin_is_refused,
    failures_answer_alike_and_back_off,
    bad_requests_are_clear_4xx,
    operator_reset_and_unverified_channel_remove_passkeys,
    regression_removing_passkeys_records_passkeys,
    not_offered_when_the_public_url_is_an_ip,
    concurrent_finishes_win_once,
);

/// The app at `http://localhost:PORT` (relying party id `localhost`).
fn localhost(db: &TestDb) -> TestApp {
    spawn(db, &[("FLEX_USER_PUBLIC_URL", "http://localhost:{port}")])
}

fn origin(app: &TestApp) -> String {
    app.base.replace("127.0.0.1", "localhost")
}

fn json_of(page: &Page) -> Value {
    assert!(
        page.headers.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
        "{} {}",
        page.status,
        page.body
    );
    serde_json::from_str(&page.body).unwrap_or_else(|e| panic!("{e}: {}", page.body))
}

fn events(app: &TestApp, user_id: i64) -> Vec<Event> {
    app.flows.activity_of(user_id, 0, 100).unwrap().entries.into_iter().map(|e| e.event).collect()
}

/// Adds a passkey named `name` from `/account/two-factor`, as the script does: the answer.
fn add(browser: &Browser, key: &mut SoftAuthenticator, name: &str) -> Page {
    browser.get("/account/two-factor");
    let start =
        browser.post_json("/account/passkeys/register/start", &json!({"name": name, "current_password": PASSWORD}));
    assert_status(&start, StatusCode::OK);
    let options = json_of(&start);
    let credential = key.register(&options["publicKey"]);
    browser.post_json(
        "/account/passkeys/register/finish",
        &json!({"challenge": options["challenge"], "credential": credential}),
    )
}

/// Signs in with the passkey alone from `/sign-in`: the answer to the finish.
fn passkey_sign_in(browser: &Browser, key: &mut SoftAuthenticator) -> Page {
    browser.get("/sign-in");
    let options = json_of(&browser.post_json("/sign-in/passkey/start", &json!({})));
    let credential = key.assert(&options["publicKey"]);
    browser.post_json(
        "/sign-in/passkey/finish",
        &json!({"challenge": options["challenge"], "credential": credential, "next": "/account/sessions"}),
    )
}

/// Alice, signed in, with a passkey added (her first second factor).
fn alice_with_passkey(app: &TestApp) -> (Browser<'_>, SoftAuthenticator) {
    let browser = alice(app);
    let mut key = SoftAuthenticator::new(&origin(app));
    let added = add(&browser, &mut key, "Laptop");
    assert_status(&added, StatusCode::OK);
    assert_eq!(json_of(&added)["location"], "/account/two-factor/recovery-codes");
    (browser, key)
}

/// The public id in the first passkey remove form of the overview.
fn first_public_id(page: &str) -> String {
    let at = page.find("action=\"/account/passkeys/").expect("a remove form");
    let rest = &page[at + "action=\"/account/passkeys/".len()..];
    rest[..rest.find('/').unwrap()].to_owned()
}

fn verify_email(app: &TestApp, browser: &Browser) {
    browser.get("/verify/email");
    browser.post("/verify/email", &[("code", &mailed_code(app, ALICE_EMAIL, 0))]).assert_redirect("/account");
}

fn add_list_and_remove_with_the_rules_of_factors(db: &TestDb) {
    let app = localhost(db);
    let browser = alice(&app);
    verify_email(&app, &browser);
    let id = user(&app, "alice").unwrap().id;
    let page = browser.get("/account/two-factor");
    assert!(page.body.contains("id=\"passkey-add\"") && page.body.contains("name=\"name\""), "{}", page.body);
    assert!(page.body.contains("<script src=\"/static/passkey.js\" defer></script>"));
    let script = browser.get("/static/passkey.js");
    assert_status(&script, StatusCode::OK);
    assert!(script.body.contains("navigator.credentials.create"));

    // a wrong password or no name: 422 with the fields, nothing pending
    for (name, password, field) in [("Laptop", "wrong", "current_password"), ("  ", PASSWORD, "name")] {
        let refused =
            browser.post_json("/account/passkeys/register/start", &json!({"name": name, "current_password": password}));
        assert_status(&refused, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(json_of(&refused)["fields"][field].is_string(), "{}", refused.body);
    }
    // without the script the form says what it needs
    let page = browser.post("/account/passkeys", &[("name", "Laptop"), ("current_password", PASSWORD)]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("needs JavaScript"));

    let version = app.accounts.factor_version(id).unwrap();
    let mut key = SoftAuthenticator::new(&origin(&app));
    let added = add(&browser, &mut key, "Laptop <script>");
    assert_eq!(json_of(&added)["location"], "/account/two-factor/recovery-codes");
    assert_eq!(browser.get("/account/two-factor/recovery-codes").body.matches("class=\"recovery-code\"").count(), 10);
    assert!(app.accounts.factor_version(id).unwrap() > version, "trusted browsers are void");
    assert!(events(&app, id).contains(&Event::SecondFactorAdded(Factor::Passkey)));
    assert_eq!(queued(&app, ALICE_EMAIL).1, 1, "the notice");
    // a second one: no new codes; the same authenticator again: refused
    let mut other = SoftAuthenticator::new(&origin(&app));
    assert_eq!(json_of(&add(&browser, &mut other, "Phone"))["location"], "/account/two-factor");
    let again = add(&browser, &mut key, "Laptop again");
    assert_status(&again, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.accounts.two_factor_status(id).unwrap().passkeys, 2);

    // listed with when added and last used, each with its remove form (a random public id)
    let page = browser.get("/account/two-factor");
    assert!(page.body.contains("Laptop &#60;script&#62;") && page.body.contains("Phone"), "{}", page.body);
    assert_eq!(page.body.matches("class=\"passkey\"").count(), 2);
    assert!(page.body.contains("Never"));
    let public_id = first_public_id(&page.body);
    assert!(public_id.len() >= 20 && public_id.parse::<i64>().is_err(), "{public_id}");
    let export = json_of(&browser.get("/account/export"));
    let factors = export["second_factors"].as_array().unwrap();
    assert_eq!(factors.len(), 2);
    assert_eq!((&factors[0]["kind"], &factors[0]["name"]), (&json!("passkey"), &json!("Laptop <script>")));
    assert!(!export.to_string().contains(&key.credential_b64()), "no credential in the export");

    // removing: 422 for a wrong password, 404 for an id that is not hers (or no id)
    let wrong = browser.post(&format!("/account/passkeys/{public_id}/delete"), &[("current_password", "nope")]);
    assert_status(&wrong, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("That is not your current password"), "{}", wrong.body);
    let bob = Browser::new(&app);
    bob.sign_up(&[("username", "bob"), ("password", PASSWORD)]).assert_redirect("/account");
    bob.get("/account/two-factor");
    let theirs = bob.post(&format!("/account/passkeys/{public_id}/delete"), &[("current_password", PASSWORD)]);
    assert_status(&theirs, StatusCode::NOT_FOUND);
    let none = browser.post("/account/passkeys/nothing-here/delete", &[("current_password", PASSWORD)]);
    assert_status(&none, StatusCode::NOT_FOUND);
    let no_token = Browser::new(&app).post_raw(&format!("/account/passkeys/{public_id}/delete"), &[]);
    assert_status(&no_token, StatusCode::FORBIDDEN);
    assert_eq!(app.accounts.two_factor_status(id).unwrap().passkeys, 2);

    browser.get("/account/two-factor");
    browser
        .post(&format!("/account/passkeys/{public_id}/delete"), &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor");
    let status = app.accounts.two_factor_status(id).unwrap();
    assert_eq!((status.passkeys, status.recovery_codes_left), (1, 10), "codes stay with a factor left");
    let page = browser.get("/account/two-factor");
    browser
        .post(&format!("/account/passkeys/{}/delete", first_public_id(&page.body)), &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor");
    let status = app.accounts.two_factor_status(id).unwrap();
    assert_eq!((status.passkeys, status.recovery_codes_left), (0, 0), "the codes go with the last factor");
    assert_eq!(events(&app, id).iter().filter(|e| **e == Event::SecondFactorRemoved(Factor::Passkey)).count(), 2);
    assert_eq!(queued(&app, ALICE_EMAIL).1, 4, "a notice for each addition and removal");
    // the export names no key material
    let export = browser.get("/account/export");
    assert!(!export.body.contains(&key.credential_b64()), "{}", export.body);
    assert_eq!(json_of(&export)["second_factors"], json!([]));
}

fn sign_in_alone_and_as_the_second_step(db: &TestDb) {
    let app = localhost(db);
    let (browser, mut key) = alice_with_passkey(&app);
    let id = user(&app, "alice").unwrap().id;
    browser.post("/sign-out", &[]).assert_redirect("/");

    let page = browser.get("/sign-in");
    assert!(page.body.contains("id=\"passkey-sign-in\"") && page.body.contains("autocomplete=\"username webauthn\""));
    let before = browser.cookie("flex_session");
    let signed_in = passkey_sign_in(&browser, &mut key);
    assert_status(&signed_in, StatusCode::OK);
    assert_eq!(json_of(&signed_in)["location"], "/account/sessions", "next is kept");
    assert_ne!(browser.cookie("flex_session"), before, "a new session id");
    assert_status(&browser.get("/account"), StatusCode::OK);
    assert_eq!(events(&app, id).first(), Some(&Event::SignedIn(SignInMethod::Passkey)));
    assert!(browser.get("/account/two-factor").body.contains("Last used"));

    // the password asks for the second step, which offers the passkey
    browser.post("/sign-out", &[]).assert_redirect("/");
    let half = Browser::new(&app);
    half.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");
    let page = half.get("/sign-in/two-factor");
    assert!(page.body.contains("id=\"passkey-second-factor\""), "{}", page.body);
    let options = json_of(&half.post_json("/sign-in/two-factor/passkey/start", &json!({})));
    assert_eq!(options["publicKey"]["allowCredentials"][0]["id"], key.credential_b64());
    let credential = key.assert(&options["publicKey"]);
    let done = half.post_json(
        "/sign-in/two-factor/passkey/finish",
        &json!({"challenge": options["challenge"], "credential": credential, "remember": true}),
    );
    assert_status(&done, StatusCode::OK);
    assert_eq!(json_of(&done)["location"], "/account");
    assert!(done.set_cookies().iter().any(|c| c.starts_with("flex_trusted=")), "remember: a trusted browser");
    assert_status(&half.get("/account"), StatusCode::OK);
    let recorded = events(&app, id);
    assert_eq!(recorded.first(), Some(&Event::SignedIn(SignInMethod::Password)), "as its first factor: {recorded:?}");
    assert_eq!(recorded.iter().filter(|e| matches!(e, Event::SignedIn(_))).count(), 2, "recorded once: {recorded:?}");

    // another browser's half sign-in cannot use this one's challenge (the challenge is bound to
    // the half sign-in it was made for: account, versions, the time of the password step)
    let other = Browser::new(&app);
    other.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");
    other.get("/sign-in/two-factor");
    app.clock.advance(secs(1));
    let mine = Browser::new(&app);
    mine.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");
    mine.get("/sign-in/two-factor");
    let options = json_of(&mine.post_json("/sign-in/two-factor/passkey/start", &json!({})));
    let credential = key.assert(&options["publicKey"]);
    let stolen = other.post_json(
        "/sign-in/two-factor/passkey/finish",
        &json!({"challenge": options["challenge"], "credential": credential}),
    );
    assert_status(&stolen, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(&other.get("/account"), StatusCode::SEE_OTHER);
    assert_eq!(events(&app, id).first(), Some(&Event::SignInFailed), "a failed second step is counted");
}

fn a_challenge_is_used_once_and_expires(db: &TestDb) {
    let app = localhost(db);
    let (browser, mut key) = alice_with_passkey(&app);
    browser.post("/sign-out", &[]).assert_redirect("/");
    let b = Browser::new(&app);
    b.get("/sign-in");
    let options = json_of(&b.post_json("/sign-in/passkey/start", &json!({})));
    let credential = key.assert(&options["publicKey"]);
    let body = json!({"challenge": options["challenge"], "credential": credential});
    assert_status(&b.post_json("/sign-in/passkey/finish", &body), StatusCode::OK);
    // the same answer again (a replay): the challenge is gone
    let replay = Browser::new(&app);
    replay.get("/sign-in");
    assert_status(&replay.post_json("/sign-in/passkey/finish", &body), StatusCode::UNAUTHORIZED);

    // a fresh answer to a challenge older than 5 minutes
    let late = Browser::new(&app);
    late.get("/sign-in");
    let options = json_of(&late.post_json("/sign-in/passkey/start", &json!({})));
    app.clock.advance(secs(5 * 60 + 1));
    let credential = key.assert(&options["publicKey"]);
    let answer = late
        .post_json("/sign-in/passkey/finish", &json!({"challenge": options["challenge"], "credential": credential}));
    assert_status(&answer, StatusCode::UNAUTHORIZED);
    // and one just in time
    let options = json_of(&late.post_json("/sign-in/passkey/start", &json!({})));
    app.clock.advance(secs(4 * 60 + 50));
    let credential = key.assert(&options["publicKey"]);
    let answer = late
        .post_json("/sign-in/passkey/finish", &json!({"challenge": options["challenge"], "credential": credential}));
    assert_status(&answer, StatusCode::OK);

    // an addition's challenge is bound to who started it and used once
    let browser = Browser::new(&app);
    browser.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");
    let bob = Browser::new(&app);
    bob.sign_up(&[("username", "bob"), ("password", PASSWORD)]).assert_redirect("/account");
    bob.get("/account/two-factor");
    let start =
        bob.post_json("/account/passkeys/register/start", &json!({"name": "Bob's", "current_password": PASSWORD}));
    let options = json_of(&start);
    let mut bobs = SoftAuthenticator::new(&origin(&app));
    let credential = bobs.register(&options["publicKey"]);
    let body = json!({"challenge": options["challenge"], "credential": credential});
    assert_status(&bob.post_json("/account/passkeys/register/finish", &body), StatusCode::OK);
    let twice = bob.post_json("/account/passkeys/register/finish", &body);
    assert_status(&twice, StatusCode::CONFLICT);
    assert_eq!(json_of(&twice)["location"], "/account/two-factor");
}

fn a_counter_that_went_back_is_refused(db: &TestDb) {
    let app = localhost(db);
    let (browser, mut key) = alice_with_passkey(&app);
    browser.post("/sign-out", &[]).assert_redirect("/");
    key.counter = 10;
    assert_status(&passkey_sign_in(&Browser::new(&app), &mut key), StatusCode::OK);
    // a clone of the authenticator, behind the original's counter
    key.counter = 5;
    let clone = Browser::new(&app);
    assert_status(&passkey_sign_in(&clone, &mut key), StatusCode::UNAUTHORIZED);
    assert_status(&clone.get("/account"), StatusCode::SEE_OTHER);
    // the same counter again is refused too (past the backoff of that failure); a later one signs in
    app.clock.advance(secs(2));
    key.counter = 11;
    assert_status(&passkey_sign_in(&Browser::new(&app), &mut key), StatusCode::OK);
    key.counter = 11;
    assert_status(&passkey_sign_in(&Browser::new(&app), &mut key), StatusCode::UNAUTHORIZED);
    assert_status(&passkey_sign_in(&Browser::new(&app), &mut key), StatusCode::TOO_MANY_REQUESTS);
}

fn another_origin_is_refused(db: &TestDb) {
    let app = localhost(db);
    let browser = alice(&app);
    // a phishing page relaying the site's options: its origin is in the client data
    let mut key = SoftAuthenticator::new("http://localhost.evil.test");
    let refused = add(&browser, &mut key, "Laptop");
    assert_status(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.accounts.two_factor_status(user(&app, "alice").unwrap().id).unwrap().passkeys, 0);

    let mut key = SoftAuthenticator::new(&origin(&app));
    assert_status(&add(&browser, &mut key, "Laptop"), StatusCode::OK);
    key.origin = "http://localhost:1".into();
    assert_status(&passkey_sign_in(&Browser::new(&app), &mut key), StatusCode::UNAUTHORIZED);
    app.clock.advance(secs(2));
    key.origin = origin(&app);
    assert_status(&passkey_sign_in(&Browser::new(&app), &mut key), StatusCode::OK);
}

fn failures_answer_alike_and_back_off(db: &TestDb) {
    let app = localhost(db);
    let (browser, mut key) = alice_with_passkey(&app);
    browser.post("/sign-out", &[]).assert_redirect("/");
    let id = user(&app, "alice").unwrap().id;
    // a wrong signature for her credential, and a credential nobody has: the same answer
    let b = Browser::new(&app);
    b.get("/sign-in");
    let options = json_of(&b.post_json("/sign-in/passkey/start", &json!({})));
    let mut credential = key.assert(&options["publicKey"]);
    credential["response"]["signature"] = json!("MEUCIQDu");
    let known =
        b.post_json("/sign-in/passkey/finish", &json!({"challenge": options["challenge"], "credential": credential}));
    let mut stranger = SoftAuthenticator::new(&origin(&app));
    stranger.user_handle = vec![7; 16];
    let options = json_of(&b.post_json("/sign-in/passkey/start", &json!({})));
    let credential = stranger.assert(&options["publicKey"]);
    let unknown =
        b.post_json("/sign-in/passkey/finish", &json!({"challenge": options["challenge"], "credential": credential}));
    assert_eq!((known.status, unknown.status), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(known.body, unknown.body);
    assert_eq!(events(&app, id).first(), Some(&Event::SignInFailed), "counted for her account");

    // her credential now backs off (2^(n-1) s): refused unchecked, with Retry-After
    let throttled = passkey_sign_in(&Browser::new(&app), &mut key);
    assert_status(&throttled, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key("retry-after"));
    app.clock.advance(secs(2));
    assert_status(&passkey_sign_in(&Browser::new(&app), &mut key), StatusCode::OK);
}

/// Also the regression test of `web::guard::headers`, which replaced every 4xx of a page route
/// that was not HTML with an error page, so a script got HTML for its JSON refusal (this and three
/// more tests here fail with the guard as it was).
fn bad_requests_are_clear_4xx(db: &TestDb) {
    let app = localhost(db);
    let (browser, _) = alice_with_passkey(&app);
    browser.get("/account/two-factor");
    for path in [
        "/account/passkeys/register/start",
        "/account/passkeys/register/finish",
        "/sign-in/passkey/finish",
        "/sign-in/two-factor/passkey/finish",
    ] {
        let page = browser.post_json(path, &json!("not an object"));
        assert!(page.status.is_client_error(), "{path}: {}", page.status);
        assert_eq!(json_of(&page)["error"].as_str().map(|e| !e.is_empty()), Some(true), "{path}");
    }
    let garbage = browser.post_json("/account/passkeys/register/finish", &json!({"challenge": "x", "credential": {}}));
    assert_status(&garbage, StatusCode::BAD_REQUEST);
    // without the CSRF header: 403 before anything is read
    let anonymous = Browser::new(&app);
    anonymous.get("/sign-in");
    assert_status(&anonymous.post_raw("/sign-in/passkey/start", &[]), StatusCode::FORBIDDEN);
    // signed out, the account's calls say so; no half sign-in, the second step's do
    let start = anonymous.post_json("/account/passkeys/register/start", &json!({}));
    assert_status(&start, StatusCode::UNAUTHORIZED);
    let second = anonymous.post_json("/sign-in/two-factor/passkey/start", &json!({}));
    assert_status(&second, StatusCode::CONFLICT);
    assert_eq!(json_of(&second)["location"], "/sign-in");
    anonymous
        .post("/account/passkeys/abc/delete", &[("current_password", PASSWORD)])
        .assert_redirect("/sign-in?next=/account/two-factor");
}

fn operator_reset_and_unverified_channel_remove_passkeys(db: &TestDb) {
    let app = localhost(db);
    let (_browser, _key) = alice_with_passkey(&app);
    let id = user(&app, "alice").unwrap().id;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::cli::flex_user(&db.env_url(), dir.path());
    cmd.args(["reset-two-factor", "--username", "alice"]);
    let out = crate::cli::run(cmd, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(app.accounts.two_factor_status(id).unwrap(), Default::default());
    Browser::new(&app).sign_in("alice", PASSWORD).assert_redirect("/account");

    // a reset through her email, unverified until then, removes what was set up before it
    let browser = Browser::new(&app);
    browser.sign_in("alice", PASSWORD).assert_redirect("/account");
    let mut key = SoftAuthenticator::new(&origin(&app));
    assert_status(&add(&browser, &mut key, "Laptop"), StatusCode::OK);
    assert_eq!(app.accounts.two_factor_status(id).unwrap().passkeys, 1);
    app.clock.advance(secs(61));
    reset_through_email(&app, ALICE_EMAIL, 1, NEW_PASSWORD);
    assert_eq!(app.accounts.two_factor_status(id).unwrap(), Default::default());
    assert_status(&passkey_sign_in(&Browser::new(&app), &mut key), StatusCode::UNAUTHORIZED);
}

/// Before passkeys, removing every factor recorded "authenticator app removed" whatever went;
/// a passkey removed by the unverified-channel rule is recorded as a passkey.
fn regression_removing_passkeys_records_passkeys(db: &TestDb) {
    let app = localhost(db);
    let (_browser, _key) = alice_with_passkey(&app);
    let id = user(&app, "alice").unwrap().id;
    app.clock.advance(secs(61));
    reset_through_email(&app, ALICE_EMAIL, 1, NEW_PASSWORD);
    let events = events(&app, id);
    assert!(events.contains(&Event::SecondFactorRemoved(Factor::Passkey)), "{events:?}");
    assert!(!events.contains(&Event::SecondFactorRemoved(Factor::AuthenticatorApp)), "{events:?}");
}

fn not_offered_when_the_public_url_is_an_ip(db: &TestDb) {
    let app = spawn(db, &[("FLEX_USER_PUBLIC_URL", "http://127.0.0.1:{port}")]);
    let browser = alice(&app);
    let page = browser.get("/account/two-factor");
    assert_status(&page, StatusCode::OK);
    assert!(!page.body.contains("passkey-add") && !page.body.contains("passkey.js"), "{}", page.body);
    assert!(page.body.contains("Passkeys are not offered"));
    let start =
        browser.post_json("/account/passkeys/register/start", &json!({"name": "Laptop", "current_password": PASSWORD}));
    assert_status(&start, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json_of(&start)["message"].as_str().unwrap().contains("not offered"));
    let page = browser.post("/account/passkeys", &[("name", "Laptop"), ("current_password", PASSWORD)]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    browser.post("/sign-out", &[]).assert_redirect("/");
    let page = browser.get("/sign-in");
    assert!(!page.body.contains("passkey-sign-in") && page.body.contains("autocomplete=\"username\""));
    assert_status(&browser.post_json("/sign-in/passkey/start", &json!({})), StatusCode::NOT_FOUND);
    // everything else works
    browser.sign_in("alice", PASSWORD).assert_redirect("/account");
}

/// Every ceremony's finish is a check-then-act: one assertion posted by 8 clients at once signs
/// in once (the challenge's DELETE), and two additions begun under one factor version and
/// finished at once add one passkey (the factor version's compare-and-swap).
fn concurrent_finishes_win_once(db: &TestDb) {
    let app = localhost(db);
    let (browser, mut key) = alice_with_passkey(&app);
    browser.post("/sign-out", &[]).assert_redirect("/");
    let starter = Browser::new(&app);
    starter.get("/sign-in");
    let options = json_of(&starter.post_json("/sign-in/passkey/start", &json!({})));
    let body = json!({"challenge": options["challenge"], "credential": key.assert(&options["publicKey"])});
    let clients: Vec<Browser> = (0..8).map(|_| Browser::new(&app)).collect();
    for client in &clients {
        client.get("/sign-in");
    }
    let statuses = crate::common::at_once(8, |i| clients[i].post_json("/sign-in/passkey/finish", &body).status);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    // the rest lost the claim of the credential's backoff turn (429) or found the challenge gone
    let refused = [StatusCode::OK, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS];
    assert!(statuses.iter().all(|s| refused.contains(s)), "{statuses:?}");
    let id = user(&app, "alice").unwrap().id;
    let sign_ins = events(&app, id).into_iter().filter(|e| *e == Event::SignedIn(SignInMethod::Passkey)).count();
    assert_eq!(sign_ins, 1);

    app.clock.advance(secs(2)); // past a loser's backoff window
    let browser = Browser::new(&app);
    let signed_in = passkey_sign_in(&browser, &mut key);
    assert_status(&signed_in, StatusCode::OK);
    browser.get("/account/two-factor");
    let starts: Vec<Value> = (0..2)
        .map(|n| {
            let start = browser.post_json(
                "/account/passkeys/register/start",
                &json!({"name": format!("Key {n}"), "current_password": PASSWORD}),
            );
            json_of(&start)
        })
        .collect();
    let mut keys: Vec<SoftAuthenticator> = (0..2).map(|_| SoftAuthenticator::new(&origin(&app))).collect();
    let bodies: Vec<Value> = starts
        .iter()
        .zip(keys.iter_mut())
        .map(|(options, k)| json!({"challenge": options["challenge"], "credential": k.register(&options["publicKey"])}))
        .collect();
    let statuses =
        crate::common::at_once(2, |i| browser.post_json("/account/passkeys/register/finish", &bodies[i]).status);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert_eq!(app.accounts.two_factor_status(id).unwrap().passkeys, 2, "Laptop and one of the two");
}
