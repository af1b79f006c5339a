//! Second factors over HTTP (CONTRACT.md, part two, "Second factors"), on SQLite and
//! PostgreSQL, with the harness's clock: the authenticator app, recovery codes, the second
//! sign-in step, the trusted browser, resets, and `flex-user reset-two-factor`.

use chrono::{DateTime, Utc};
use flex_user::accounts::TotpSecret;
use reqwest::StatusCode;

use crate::common::app::{Browser, Page, TestApp};
use crate::common::flows::{
    ALICE_EMAIL, NEW_PASSWORD, PASSWORD, alice, assert_status, reset_through_email, secs, spawn, user,
};
use crate::common::{TestDb, at_once};

on_both_databases!(
    setup_needs_the_password,
    confirmation_wrong_then_right_and_codes_shown_once,
    second_step_signs_in_and_keeps_next,
    a_wrong_password_answers_as_before,
    replay_and_the_window_of_one_step,
    recovery_codes_work_once,
    backoff_refuses_without_checking,
    concurrent_posts_of_one_code_win_once,
    concurrent_uses_of_one_recovery_code_win_once,
    trusted_browser_skips_and_a_password_change_voids_it,
    half_sign_in_expires_and_depends_on_the_password,
    pending_setup_is_void_when_factors_change,
    turning_off_and_new_recovery_codes,
    reset_keeps_factors,
    reset_through_an_unverified_email_drops_them,
    a_changed_secret_key_is_no_500,
    cli_reset_two_factor,
    site_name_is_the_issuer_and_in_titles,
    an_account_without_a_password_confirms_with_a_code,
);

/// The text of the element with `id`.
fn element_text(body: &str, id: &str) -> String {
    let at = body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {body}"));
    let rest = &body[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap();
    rest[start..start + end].replace("&amp;", "&").replace("&#38;", "&")
}

/// Every text of an element with class `recovery-code`.
fn recovery_codes(body: &str) -> Vec<String> {
    body.match_indices("class=\"recovery-code\"")
        .map(|(at, _)| {
            let rest = &body[at..];
            let start = rest.find('>').unwrap() + 1;
            let end = rest[start..].find('<').unwrap();
            rest[start..start + end].to_owned()
        })
        .collect()
}

fn now(app: &TestApp) -> DateTime<Utc> {
    use flex_user::clock::Clock as _;
    app.clock.now()
}

/// Alice (signed in) turns on the authenticator app by reading the secret off the page, as a
/// person types it into an app. Returns the secret and the recovery codes shown once.
pub(crate) fn enable_totp(app: &TestApp, browser: &Browser) -> (TotpSecret, Vec<String>) {
    browser.get("/account/two-factor");
    browser
        .post("/account/two-factor/totp/setup", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor/totp");
    let page = browser.get("/account/two-factor/totp");
    assert_status(&page, StatusCode::OK);
    let secret_text = element_text(&page.body, "totp-secret");
    let uri = element_text(&page.body, "totp-uri");
    assert!(uri.starts_with("otpauth://totp/flex-user:alice?secret="), "{uri}");
    assert!(uri.contains(&format!("secret={secret_text}")) && uri.contains("issuer=flex-user"), "{uri}");
    assert!(page.body.contains("<svg") && !page.body.contains("<?xml"), "an inline SVG QR code");
    assert_eq!(secret_text.len(), 32, "160 bits in base32 without padding: {secret_text}");
    let secret = TotpSecret::from_base32(&secret_text).expect("base32");
    browser
        .post("/account/two-factor/totp", &[("code", &secret.code_at(now(app)))])
        .assert_redirect("/account/two-factor/recovery-codes");
    let page = browser.get("/account/two-factor/recovery-codes");
    let codes = recovery_codes(&page.body);
    assert_eq!(codes.len(), 10, "{}", page.body);
    // the confirming code's step is used: move to the next one before signing in with a code
    app.clock.advance(secs(30));
    (secret, codes)
}

/// A new browser that has passed the password step for Alice.
fn half_signed_in<'a>(app: &'a TestApp) -> Browser<'a> {
    let browser = Browser::new(app);
    browser.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");
    browser.get("/sign-in/two-factor");
    browser
}

fn second_step(browser: &Browser, code: &str) -> Page {
    browser.post("/sign-in/two-factor", &[("code", code)])
}

fn setup_needs_the_password(db: &TestDb) {
    let app = spawn(db, &[]);
    let signed_out = Browser::new(&app);
    signed_out.get("/account/two-factor").assert_redirect("/sign-in?next=/account/two-factor");
    signed_out.get("/sign-in/two-factor").assert_redirect("/sign-in");

    let browser = alice(&app);
    let page = browser.get("/account/two-factor");
    assert_status(&page, StatusCode::OK);
    assert!(page.body.contains("/account/two-factor/totp/setup"));
    for wrong in ["", "not my password"] {
        let page = browser.post("/account/two-factor/totp/setup", &[("current_password", wrong)]);
        assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.body.contains("aria-invalid=\"true\""), "{}", page.body);
        browser.get("/account/two-factor/totp").assert_redirect("/account/two-factor");
    }
    let alice_id = user(&app, "alice").unwrap().id;
    assert!(!app.accounts.two_factor_status(alice_id).unwrap().totp);
}

fn confirmation_wrong_then_right_and_codes_shown_once(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    browser
        .post("/account/two-factor/totp/setup", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor/totp");
    let page = browser.get("/account/two-factor/totp");
    let secret = TotpSecret::from_base32(&element_text(&page.body, "totp-secret")).unwrap();
    let right = secret.code_at(now(&app));
    let wrong = if right == "000000" { "111111".to_owned() } else { "000000".to_owned() };
    let page = browser.post("/account/two-factor/totp", &[("code", &wrong)]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("id=\"code-error\""), "{}", page.body);
    assert!(!app.accounts.two_factor_status(user(&app, "alice").unwrap().id).unwrap().totp);
    browser.post("/account/two-factor/totp", &[("code", &right)]).assert_redirect("/account/two-factor/recovery-codes");
    let first = browser.get("/account/two-factor/recovery-codes");
    assert_eq!(recovery_codes(&first.body).len(), 10);
    let again = browser.get("/account/two-factor/recovery-codes");
    assert_eq!(recovery_codes(&again.body).len(), 0, "shown once");
    assert!(again.body.contains("<strong>10</strong>"), "{}", again.body);
    // nothing pending any more
    browser.get("/account/two-factor/totp").assert_redirect("/account/two-factor");
    let overview = browser.get("/account/two-factor");
    assert!(overview.body.contains("/account/two-factor/totp/disable"));
}

fn second_step_signs_in_and_keeps_next(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (secret, _) = enable_totp(&app, &browser);
    browser.get("/");
    browser.post("/sign-out", &[]).assert_redirect("/");

    let b = Browser::new(&app);
    b.get("/sign-in?next=/verify/email");
    let before = b.cookie("flex_session");
    let page = b.post("/sign-in", &[("identifier", "alice"), ("password", PASSWORD), ("next", "/verify/email")]);
    page.assert_redirect("/sign-in/two-factor?next=/verify/email");
    // half signed in is not signed in
    b.get("/account").assert_redirect("/sign-in?next=/account");
    let half_cookie = b.cookie("flex_session");
    assert_ne!(before, half_cookie);
    let page = b.get("/sign-in/two-factor");
    assert_status(&page, StatusCode::OK);
    for needle in ["inputmode=\"numeric\"", "autocomplete=\"one-time-code\"", "name=\"remember\"", "name=\"code\""] {
        assert!(page.body.contains(needle), "{needle}");
    }
    let wrong = second_step(&b, "12345x");
    assert_status(&wrong, StatusCode::UNPROCESSABLE_ENTITY);
    app.clock.advance(secs(2)); // past the backoff of that failure
    second_step(&b, &secret.code_at(now(&app))).assert_redirect("/verify/email");
    assert_ne!(b.cookie("flex_session"), half_cookie, "a new session id");
    assert_status(&b.get("/account"), StatusCode::OK);
    // the half sign-in is spent
    b.get("/sign-in/two-factor").assert_redirect("/sign-in");
}

fn a_wrong_password_answers_as_before(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    enable_totp(&app, &browser);
    let with_factor = Browser::new(&app).sign_in("alice", "wrong password");
    let unknown = Browser::new(&app).sign_in("nobody", "wrong password");
    assert_status(&with_factor, StatusCode::UNAUTHORIZED);
    assert_status(&unknown, StatusCode::UNAUTHORIZED);
    let strip = |p: &Page| crate::common::flows::without_tokens(&p.body).replace("alice", "").replace("nobody", "");
    assert_eq!(strip(&with_factor), strip(&unknown));
    assert!(!with_factor.body.contains("two-factor"));
}

fn replay_and_the_window_of_one_step(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (secret, _) = enable_totp(&app, &browser);
    let code = secret.code_at(now(&app));
    second_step(&half_signed_in(&app), &code).assert_redirect("/account");
    // the same step again: refused
    let page = second_step(&half_signed_in(&app), &code);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    app.clock.advance(secs(2));

    // one step behind is accepted, two steps are not
    app.clock.advance(secs(60));
    let two_behind = secret.code_at(now(&app) - secs(60));
    let one_behind = secret.code_at(now(&app) - secs(30));
    let b = half_signed_in(&app);
    if two_behind != one_behind {
        assert_status(&second_step(&b, &two_behind), StatusCode::UNPROCESSABLE_ENTITY);
        app.clock.advance(secs(2));
    }
    second_step(&b, &secret.code_at(now(&app) - secs(30))).assert_redirect("/account");
    // one step ahead is accepted; then the current step, inside the window but earlier than the
    // last accepted one, is not
    app.clock.advance(secs(30));
    let ahead = secret.code_at(now(&app) + secs(30));
    second_step(&half_signed_in(&app), &ahead).assert_redirect("/account");
    let current = secret.code_at(now(&app));
    if current != ahead {
        assert_status(&second_step(&half_signed_in(&app), &current), StatusCode::UNPROCESSABLE_ENTITY);
    }
}

fn recovery_codes_work_once(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (_, codes) = enable_totp(&app, &browser);
    let typed = codes[3].to_uppercase().replace('-', " ");
    second_step(&half_signed_in(&app), &typed).assert_redirect("/account");
    let id = user(&app, "alice").unwrap().id;
    assert_eq!(app.accounts.two_factor_status(id).unwrap().recovery_codes_left, 9);
    let page = second_step(&half_signed_in(&app), &codes[3]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    app.clock.advance(secs(2));
    second_step(&half_signed_in(&app), &codes[4]).assert_redirect("/account");
    assert_eq!(app.accounts.two_factor_status(id).unwrap().recovery_codes_left, 8);
}

fn backoff_refuses_without_checking(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (secret, codes) = enable_totp(&app, &browser);
    let id = user(&app, "alice").unwrap().id;
    let b = half_signed_in(&app);
    // 1, 2, 4, 8 … seconds after each failure, per account
    let mut waited = 0;
    for n in 1..=5u32 {
        assert_status(&second_step(&b, "000000x"), StatusCode::UNPROCESSABLE_ENTITY);
        let window = 1i64 << (n - 1);
        // a flood inside the window: 429, and a right code or a recovery code is not even looked at
        for code in [secret.code_at(now(&app)), codes[0].clone(), "nonsense".into()] {
            let page = second_step(&b, &code);
            assert_status(&page, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(page.header("retry-after"), Some(window.to_string().as_str()));
            assert!(page.body.contains("Try again in"), "{}", page.body);
        }
        assert_eq!(app.accounts.two_factor_status(id).unwrap().recovery_codes_left, 10, "nothing used up");
        app.clock.advance(secs(window));
        waited += window;
    }
    assert!(waited < 300, "inside the half sign-in's five minutes");
    // the same backoff for another browser of the same account (per account, not per session)
    assert_status(&second_step(&b, "000000x"), StatusCode::UNPROCESSABLE_ENTITY);
    let other = half_signed_in(&app);
    assert_status(&second_step(&other, &codes[0]), StatusCode::TOO_MANY_REQUESTS);
    // capped at 15 minutes
    let lib = &app.accounts;
    for _ in 0..20 {
        app.clock.advance(secs(901));
        let _ = lib.verify_second_factor(id, "000000");
    }
    match lib.verify_second_factor(id, "000000").unwrap() {
        flex_user::accounts::SecondFactorCheck::Throttled(t) => assert!(t.retry_after_secs(now(&app)) <= 900),
        other => panic!("expected throttled, got {other:?}"),
    }
    app.clock.advance(secs(901));
    assert_eq!(
        lib.verify_second_factor(id, &secret.code_at(now(&app))).unwrap(),
        flex_user::accounts::SecondFactorCheck::Totp,
        "success after the window"
    );
}

fn concurrent_posts_of_one_code_win_once(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (secret, _) = enable_totp(&app, &browser);
    let browsers: Vec<_> = (0..6).map(|_| half_signed_in(&app)).collect();
    let code = secret.code_at(now(&app));
    let pages = at_once(browsers.len(), |i| second_step(&browsers[i], &code));
    let won = pages.iter().filter(|p| p.status == StatusCode::SEE_OTHER).count();
    assert_eq!(won, 1, "{:?}", pages.iter().map(|p| p.status).collect::<Vec<_>>());
    // and the replay guard alone, without the throttle: the library on the same step, later
    app.clock.advance(secs(20));
    let id = user(&app, "alice").unwrap().id;
    let results = at_once(6, |_| app.accounts.verify_second_factor(id, &code).unwrap());
    assert!(results.iter().all(|r| *r != flex_user::accounts::SecondFactorCheck::Totp), "{results:?}");
}

fn concurrent_uses_of_one_recovery_code_win_once(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (_, codes) = enable_totp(&app, &browser);
    let browsers: Vec<_> = (0..6).map(|_| half_signed_in(&app)).collect();
    let pages = at_once(browsers.len(), |i| second_step(&browsers[i], &codes[0]));
    assert_eq!(pages.iter().filter(|p| p.status == StatusCode::SEE_OTHER).count(), 1);
    let id = user(&app, "alice").unwrap().id;
    assert_eq!(app.accounts.two_factor_status(id).unwrap().recovery_codes_left, 9);
}

fn trusted_browser_skips_and_a_password_change_voids_it(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (secret, _) = enable_totp(&app, &browser);
    let b = half_signed_in(&app);
    let page = b.post("/sign-in/two-factor", &[("code", &secret.code_at(now(&app))), ("remember", "on")]);
    page.assert_redirect("/account");
    let cookie = page.set_cookies().into_iter().find(|c| c.starts_with("flex_trusted=")).expect("trusted cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Max-Age=2592000"), "30 days: {cookie}");
    b.get("/");
    b.post("/sign-out", &[]).assert_redirect("/");
    // next time: straight in
    b.sign_in("alice", PASSWORD).assert_redirect("/account");
    // a forged cookie does nothing for another browser
    let other = Browser::new(&app);
    let value = b.cookie("flex_trusted").unwrap();
    let forged = value.replacen('.', "0.", 1);
    other.jar.add_cookie_str(&format!("flex_trusted={forged}"), &app.base.parse().unwrap());
    other.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");

    // a password change voids it
    b.get("/account");
    b.post("/account/password", &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD)])
        .assert_redirect("/account");
    b.get("/");
    b.post("/sign-out", &[]).assert_redirect("/");
    b.sign_in("alice", NEW_PASSWORD).assert_redirect("/sign-in/two-factor");

    // FLEX_USER_TRUSTED_BROWSER_DAYS=0 turns the checkbox off
    drop(app);
    let app = spawn(db, &[("FLEX_USER_TRUSTED_BROWSER_DAYS", "0")]);
    let b = Browser::new(&app);
    b.sign_in("alice", NEW_PASSWORD).assert_redirect("/sign-in/two-factor");
    let page = b.get("/sign-in/two-factor");
    assert!(!page.body.contains("name=\"remember\""));
    app.clock.advance(secs(120));
    let page = b.post("/sign-in/two-factor", &[("code", &secret.code_at(now(&app))), ("remember", "on")]);
    page.assert_redirect("/account");
    assert!(page.set_cookies().iter().all(|c| !c.starts_with("flex_trusted=")));
}

fn half_sign_in_expires_and_depends_on_the_password(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (secret, _) = enable_totp(&app, &browser);
    let b = half_signed_in(&app);
    app.clock.advance(secs(299));
    assert_status(&b.get("/sign-in/two-factor"), StatusCode::OK);
    app.clock.advance(secs(1));
    b.get("/sign-in/two-factor").assert_redirect("/sign-in");
    second_step(&b, &secret.code_at(now(&app))).assert_redirect("/sign-in");

    // the password changes meanwhile: void
    let b = half_signed_in(&app);
    let id = user(&app, "alice").unwrap().id;
    app.accounts.set_password(id, Some(NEW_PASSWORD)).unwrap();
    second_step(&b, &secret.code_at(now(&app))).assert_redirect("/sign-in");
}

fn pending_setup_is_void_when_factors_change(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    browser
        .post("/account/two-factor/totp/setup", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor/totp");
    let page = browser.get("/account/two-factor/totp");
    let secret = TotpSecret::from_base32(&element_text(&page.body, "totp-secret")).unwrap();
    let id = user(&app, "alice").unwrap().id;
    app.accounts.bump_factor_version(id).unwrap();
    browser
        .post("/account/two-factor/totp", &[("code", &secret.code_at(now(&app)))])
        .assert_redirect("/account/two-factor");
    assert!(!app.accounts.two_factor_status(id).unwrap().totp);
    // and after 10 minutes
    browser
        .post("/account/two-factor/totp/setup", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor/totp");
    let page = browser.get("/account/two-factor/totp");
    let secret = TotpSecret::from_base32(&element_text(&page.body, "totp-secret")).unwrap();
    app.clock.advance(secs(600));
    browser.get("/account/two-factor/totp").assert_redirect("/account/two-factor");
    browser
        .post("/account/two-factor/totp", &[("code", &secret.code_at(now(&app)))])
        .assert_redirect("/account/two-factor");
    assert!(!app.accounts.two_factor_status(id).unwrap().totp);
}

fn turning_off_and_new_recovery_codes(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (_, old) = enable_totp(&app, &browser);
    let id = user(&app, "alice").unwrap().id;
    browser.get("/account/two-factor");
    assert_status(
        &browser.post("/account/two-factor/recovery-codes", &[("current_password", "wrong")]),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    browser
        .post("/account/two-factor/recovery-codes", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor/recovery-codes");
    let new = recovery_codes(&browser.get("/account/two-factor/recovery-codes").body);
    assert_eq!(new.len(), 10);
    assert_status(&second_step(&half_signed_in(&app), &old[0]), StatusCode::UNPROCESSABLE_ENTITY);
    app.clock.advance(secs(2));
    second_step(&half_signed_in(&app), &new[0]).assert_redirect("/account");

    browser.get("/account/two-factor");
    assert_status(
        &browser.post("/account/two-factor/totp/disable", &[("current_password", "wrong")]),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(app.accounts.two_factor_status(id).unwrap().totp);
    browser
        .post("/account/two-factor/totp/disable", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor");
    let status = app.accounts.two_factor_status(id).unwrap();
    assert!(!status.totp);
    assert_eq!(status.recovery_codes_left, 0, "recovery codes go with the last factor");
    Browser::new(&app).sign_in("alice", PASSWORD).assert_redirect("/account");
}

fn reset_keeps_factors(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    // verify the email first, so the reset goes through a verified address
    let code = app.email_code(ALICE_EMAIL, 0);
    browser.get("/verify/email");
    browser.post("/verify/email", &[("code", &code)]).assert_redirect("/account");
    enable_totp(&app, &browser);
    app.clock.advance(secs(61));
    // #1 is the notice that a second factor was added
    reset_through_email(&app, ALICE_EMAIL, 2, NEW_PASSWORD);
    Browser::new(&app).sign_in("alice", NEW_PASSWORD).assert_redirect("/sign-in/two-factor");
    let id = user(&app, "alice").unwrap().id;
    assert_eq!(app.accounts.two_factor_status(id).unwrap().recovery_codes_left, 10);
}

fn reset_through_an_unverified_email_drops_them(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    enable_totp(&app, &browser);
    app.clock.advance(secs(61));
    reset_through_email(&app, ALICE_EMAIL, 1, NEW_PASSWORD);
    let id = user(&app, "alice").unwrap().id;
    let status = app.accounts.two_factor_status(id).unwrap();
    assert!(!status.totp);
    assert_eq!(status.recovery_codes_left, 0);
    assert!(user(&app, "alice").unwrap().phone.is_none());
    Browser::new(&app).sign_in("alice", NEW_PASSWORD).assert_redirect("/account");
}

fn a_changed_secret_key_is_no_500(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let (secret, _) = enable_totp(&app, &browser);
    let at = now(&app);
    drop(app);
    let app = spawn(db, &[("FLEX_USER_SECRET_KEY", &"cd".repeat(32))]);
    app.clock.set(at);
    let b = half_signed_in(&app);
    assert_status(&second_step(&b, &secret.code_at(at)), StatusCode::UNPROCESSABLE_ENTITY);
    let id = user(&app, "alice").unwrap().id;
    let status = app.accounts.two_factor_status(id).unwrap();
    assert!(status.totp && !status.totp_usable);
    assert!(app.accounts.reset_two_factor(id).unwrap());
    Browser::new(&app).sign_in("alice", PASSWORD).assert_redirect("/account");
}

fn cli_reset_two_factor(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    enable_totp(&app, &browser);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::cli::flex_user(&db.env_url(), dir.path());
    cmd.args(["reset-two-factor", "--email", ALICE_EMAIL]);
    let out = crate::cli::run(cmd, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    Browser::new(&app).sign_in("alice", PASSWORD).assert_redirect("/account");
    let id = user(&app, "alice").unwrap().id;
    assert_eq!(app.accounts.two_factor_status(id).unwrap(), Default::default());
    let removed = {
        use diesel::prelude::*;
        use flex_user::db::schema::activity as events;
        let mut conn = app.pool.get().unwrap();
        events::table
            .filter(events::user_id.eq(id))
            .filter(events::kind.eq("second_factor_removed"))
            .filter(events::detail.eq("totp"))
            .filter(events::ip.is_null())
            .count()
            .get_result::<i64>(&mut *conn)
            .unwrap()
    };
    assert_eq!(removed, 1, "the operator's reset is in the account's activity");

    for args in [["--username", "nobody"], ["--phone", "+12025550000"], ["--email", "bad@"]] {
        let mut cmd = crate::cli::flex_user(&db.env_url(), dir.path());
        cmd.arg("reset-two-factor").args(args);
        crate::cli::one_line_failure(&crate::cli::run(cmd, ""));
    }
}

fn site_name_is_the_issuer_and_in_titles(db: &TestDb) {
    let app = spawn(db, &[("FLEX_USER_SITE_NAME", "Acme Login")]);
    let page = Browser::new(&app).get("/sign-in");
    assert!(page.body.contains("<title>Sign in · Acme Login</title>"), "{}", page.body);
    let browser = alice(&app);
    browser
        .post("/account/two-factor/totp/setup", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor/totp");
    let page = browser.get("/account/two-factor/totp");
    let uri = element_text(&page.body, "totp-uri");
    assert!(uri.starts_with("otpauth://totp/Acme%20Login:alice?") && uri.ends_with("&issuer=Acme%20Login"), "{uri}");
    assert!(page.body.contains("Add Acme Login to the app"));
}

/// CONTRACT "Second factors": an account without a usable password sets up its first factor
/// within 10 minutes of signing in; from then on each change needs a current factor's `code`
/// (an authenticator code or a recovery code), not a recent sign-in.
fn an_account_without_a_password_confirms_with_a_code(db: &TestDb) {
    use flex_user::domain::Phone;
    let app = spawn(db, &[]);
    app.accounts
        .create_user(flex_user::NewUser::new().phone(Phone::parse(crate::common::flows::ALICE_PHONE, None).unwrap()))
        .unwrap();
    let browser = crate::code_sign_in::request_code(&app, crate::common::flows::ALICE_PHONE);
    let code = crate::common::flows::texted_code(&app, crate::common::flows::ALICE_PHONE, 0);
    browser.post("/sign-in/code/verify", &[("code", &code)]).assert_redirect("/account");

    // the first factor: the recent sign-in is enough, and no field is asked for
    let page = browser.get("/account/two-factor");
    assert!(!page.body.contains("name=\"current_password\"") && !page.body.contains("name=\"code\""), "{}", page.body);
    browser.post("/account/two-factor/totp/setup", &[]).assert_redirect("/account/two-factor/totp");
    let page = browser.get("/account/two-factor/totp");
    let secret = TotpSecret::from_base32(&element_text(&page.body, "totp-secret")).unwrap();
    browser
        .post("/account/two-factor/totp", &[("code", &secret.code_at(now(&app)))])
        .assert_redirect("/account/two-factor/recovery-codes");
    let codes = recovery_codes(&browser.get("/account/two-factor/recovery-codes").body);
    assert_eq!(codes.len(), 10);
    app.clock.advance(secs(30));

    // now the page asks for a code, and the recent sign-in no longer does
    let page = browser.get("/account/two-factor");
    assert!(page.body.contains("name=\"code\"") && !page.body.contains("name=\"current_password\""), "{}", page.body);
    let refused = browser.post("/account/two-factor/totp/disable", &[]);
    assert_status(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("Enter a code from your authenticator app, or a recovery code."), "{}", refused.body);
    let refused = browser.post("/account/two-factor/totp/disable", &[("code", "000000")]);
    assert_status(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    let id = user(&app, crate::common::flows::ALICE_PHONE).unwrap().id;
    assert!(app.accounts.two_factor_status(id).unwrap().totp, "nothing changed");

    // a recovery code confirms new codes (and is spent); the app's current code turns it off
    app.clock.advance(secs(2));
    browser
        .post("/account/two-factor/recovery-codes", &[("code", &codes[0])])
        .assert_redirect("/account/two-factor/recovery-codes");
    browser.get("/account/two-factor");
    browser
        .post("/account/two-factor/totp/disable", &[("code", &secret.code_at(now(&app)))])
        .assert_redirect("/account/two-factor");
    assert!(!app.accounts.two_factor_status(id).unwrap().totp);
}
