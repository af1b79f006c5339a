//! Sign in with a code (CONTRACT.md, "Sign in with a code"), over HTTP on SQLite and PostgreSQL:
//! known and unknown accounts answer alike, the code goes to the right channel, a phone-only
//! account with no password gets in, the unverified-channel rule (pre-hijacking), the backoff,
//! a code used once under concurrency, and a pending sign-in void once what it depends on changes.

use crate::common::app::{Browser, TestApp};
use crate::common::flows::*;
use crate::common::{TestDb, at_once};
use flex_user::NewUser;
use flex_user::domain::Phone;
use reqwest::StatusCode;

on_both_databases!(
    known_and_unknown_accounts_answer_alike,
    the_code_goes_to_the_right_channel_and_says_what_it_is,
    a_phone_only_account_without_a_password_signs_in_by_sms,
    next_is_kept_and_only_a_local_path,
    an_unverified_email_takes_the_account_from_whoever_set_it_up,
    a_verified_channel_keeps_everything,
    wrong_codes_back_off_and_unknown_accounts_alike,
    a_code_signs_in_once_under_concurrency,
    a_pending_sign_in_is_void_once_the_password_changes,
    a_pending_sign_in_is_void_once_its_channel_changes,
    a_pending_sign_in_is_void_once_the_account_is_deleted,
    a_reset_code_does_not_sign_in,
);

/// A browser that asked for a sign-in code for `identifier`.
pub(crate) fn request_code<'a>(app: &'a TestApp, identifier: &str) -> Browser<'a> {
    let browser = Browser::new(app);
    browser.get("/sign-in/code");
    browser.post("/sign-in/code", &[("identifier", identifier)]).assert_redirect("/sign-in/code/verify");
    browser.get("/sign-in/code/verify");
    browser
}

/// Signed in: the account page answers.
fn assert_signed_in(browser: &Browser<'_>) {
    assert_status(&browser.get("/account"), StatusCode::OK);
}

fn known_and_unknown_accounts_answer_alike(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    let sign_in = Browser::new(&app).get("/sign-in");
    assert!(sign_in.body.contains("href=\"/sign-in/code\""), "/sign-in links to the code sign-in");
    Browser::new(&app).get("/sign-in/code/verify").assert_redirect("/sign-in/code");
    let form = Browser::new(&app).get("/sign-in/code");
    assert_status(&form, StatusCode::OK);
    assert!(form.body.contains("name=\"identifier\"") && form.body.contains("action=\"/sign-in/code\""));
    // blank: re-shown, nothing recorded
    let blank = Browser::new(&app);
    blank.get("/sign-in/code");
    assert_status(&blank.post("/sign-in/code", &[("identifier", " ")]), StatusCode::UNPROCESSABLE_ENTITY);
    blank.get("/sign-in/code/verify").assert_redirect("/sign-in/code");

    for (known, unknown) in
        [(ALICE_EMAIL, "nobody@example.org"), ("alice", "nobody"), ("+1 202 555 1234", "+1 202 555 9876")]
    {
        past_cooldown(&app);
        let (k, u) = (Browser::new(&app), Browser::new(&app));
        k.get("/sign-in/code");
        u.get("/sign-in/code");
        let (pk, pu) =
            (k.post("/sign-in/code", &[("identifier", known)]), u.post("/sign-in/code", &[("identifier", unknown)]));
        pk.assert_redirect("/sign-in/code/verify");
        pu.assert_redirect("/sign-in/code/verify");
        assert_eq!(cookie_shapes(&pk), cookie_shapes(&pu), "{known} / {unknown}");
        assert!(cookie_shapes(&pk).iter().any(|c| c.starts_with("flex_session;")), "{:?}", pk.set_cookies());
        assert_eq!(pk.body, pu.body);
        let (vk, vu) = (k.get("/sign-in/code/verify"), u.get("/sign-in/code/verify"));
        assert_status(&vk, StatusCode::OK);
        assert_eq!((vk.status, without_tokens(&vk.body)), (vu.status, without_tokens(&vu.body)));
        assert!(vk.body.contains("autocomplete=\"one-time-code\"") && vk.body.contains("inputmode=\"numeric\""));
    }
    // only the known ones got codes (sign-up's one each, then these)
    assert_eq!(queued(&app, ALICE_EMAIL).0, 3);
    assert_eq!(queued(&app, ALICE_PHONE).0, 2);
    assert_eq!(queued(&app, "nobody@example.org"), (0, 0));
    assert_eq!(queued(&app, "+12025559876"), (0, 0));
}

fn the_code_goes_to_the_right_channel_and_says_what_it_is(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    Browser::new(&app)
        .sign_up(&[("username", "carol"), ("phone", OTHER_PHONE), ("password", PASSWORD)])
        .assert_redirect("/account");
    app.sms_to(OTHER_PHONE, 0);
    past_cooldown(&app);

    // a username with an email: the email, which says it is a sign-in code
    let browser = request_code(&app, "alice");
    assert_eq!((queued(&app, ALICE_EMAIL).0, queued(&app, ALICE_PHONE).0), (2, 1));
    let mail = plain_text(&app.email_to(ALICE_EMAIL, 1));
    assert!(mail.contains("sign in") && !mail.contains("reset") && !mail.contains("verify"), "{mail}");
    assert!(app.email_to(ALICE_EMAIL, 1).contains("Subject: Your sign-in code"));
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    browser.post("/sign-in/code/verify", &[("code", &code)]).assert_redirect("/account");
    assert_signed_in(&browser);

    // a username with only a phone: the phone
    let carol = request_code(&app, "carol");
    let sms = app.sms_to(OTHER_PHONE, 1);
    assert!(sms.contains("sign-in code"), "{sms}");
    carol.post("/sign-in/code/verify", &[("code", &texted_code(&app, OTHER_PHONE, 1))]).assert_redirect("/account");
    assert!(carol.get("/").body.contains(">carol<"), "signed in as carol");
}

fn a_phone_only_account_without_a_password_signs_in_by_sms(db: &TestDb) {
    let app = spawn(db, &[]);
    let phone = Phone::parse(ALICE_PHONE, None).unwrap();
    let user = app.accounts.create_user(NewUser::new().phone(phone)).unwrap();
    assert!(!user.has_usable_password());
    // it cannot sign in with any password
    let browser = Browser::new(&app);
    assert_status(&browser.sign_in(ALICE_PHONE, ""), StatusCode::UNAUTHORIZED);

    let browser = request_code(&app, "+1 (202) 555-1234");
    let code = texted_code(&app, ALICE_PHONE, 0);
    let page = browser.post("/sign-in/code/verify", &[("code", &code)]);
    page.assert_redirect("/account");
    assert!(page.set_cookies().iter().any(|c| c.starts_with("flex_session=")), "a new session id");
    let account = browser.get("/account");
    assert_status(&account, StatusCode::OK);
    assert!(is_verified(row(&account.body, "Phone")), "the phone now counts as verified");
    // the pending sign-in is done with
    browser.get("/sign-in/code/verify").assert_redirect("/sign-in/code");
    assert!(app.accounts.get_user(user.id).unwrap().unwrap().last_login.is_some());
}

fn next_is_kept_and_only_a_local_path(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    // the sign-in page passes its `next` on
    let sign_in = Browser::new(&app).get("/sign-in?next=/account/delete");
    assert!(sign_in.body.contains("href=\"/sign-in/code?next=/account/delete\""), "{}", sign_in.body);
    let form = Browser::new(&app).get("/sign-in/code?next=/account/delete");
    assert!(form.body.contains("name=\"next\" value=\"/account/delete\""), "{}", form.body);
    for (nth, (next, lands)) in
        [("/verify/phone", "/verify/phone"), ("//evil.example", "/account")].into_iter().enumerate()
    {
        let browser = Browser::new(&app);
        browser.get("/sign-in/code");
        browser
            .post("/sign-in/code", &[("identifier", "alice"), ("next", next)])
            .assert_redirect("/sign-in/code/verify");
        browser.get("/sign-in/code/verify");
        // each code sign-in, from a browser new to the account, is followed by its notice
        let code = mailed_code(&app, ALICE_EMAIL, 1 + 2 * nth);
        browser.post("/sign-in/code/verify", &[("code", &code)]).assert_redirect(lands);
        past_cooldown(&app);
    }
}

/// Pre-hijacking: someone signs up with Alice's email (never verified), their own phone and a
/// password, and stays signed in. Alice, who owns the email, signs in with a code sent to it.
fn an_unverified_email_takes_the_account_from_whoever_set_it_up(db: &TestDb) {
    let app = spawn(db, &[]);
    let attacker = Browser::new(&app);
    attacker
        .sign_up(&[("username", "alice"), ("email", ALICE_EMAIL), ("phone", OTHER_PHONE), ("password", PASSWORD)])
        .assert_redirect("/account");
    app.email_to(ALICE_EMAIL, 0);
    assert_signed_in(&attacker);
    past_cooldown(&app);

    let owner = request_code(&app, ALICE_EMAIL);
    owner.post("/sign-in/code/verify", &[("code", &mailed_code(&app, ALICE_EMAIL, 1))]).assert_redirect("/account");
    let account = owner.get("/account");
    assert_status(&account, StatusCode::OK);
    assert!(is_verified(row(&account.body, "Email")));
    assert!(row(&account.body, "Phone").contains("Not set"), "the attacker's phone is gone");
    assert!(account.body.contains("alice"), "the username stays");
    let user = user(&app, ALICE_EMAIL).unwrap();
    assert!(user.phone.is_none() && user.username.is_some());
    assert!(!user.has_usable_password(), "the attacker's password is unusable");
    assert!(app.accounts.authenticate("alice", PASSWORD).unwrap().is_none());
    assert_signed_out(&attacker.get("/account"));
    assert_signed_in(&owner);
}

fn a_verified_channel_keeps_everything(db: &TestDb) {
    let app = spawn(db, &[]);
    let other = alice(&app);
    other.get("/verify/email");
    other.post("/verify/email", &[("code", &mailed_code(&app, ALICE_EMAIL, 0))]).assert_redirect("/account");
    past_cooldown(&app);
    let browser = request_code(&app, "alice");
    browser.post("/sign-in/code/verify", &[("code", &mailed_code(&app, ALICE_EMAIL, 1))]).assert_redirect("/account");
    let user = user(&app, "alice").unwrap();
    assert!(user.phone.is_some() && user.has_usable_password());
    assert_signed_in(&other);
    assert_signed_in(&browser);
}

fn wrong_codes_back_off_and_unknown_accounts_alike(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    let known = request_code(&app, "alice");
    let unknown = request_code(&app, "nobody");
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    let attempt = |code: &str| {
        let pages = [
            known.post("/sign-in/code/verify", &[("code", code)]),
            unknown.post("/sign-in/code/verify", &[("code", code)]),
        ];
        assert_eq!(pages[0].status, pages[1].status);
        assert_eq!(pages[0].header("retry-after"), pages[1].header("retry-after"));
        assert_eq!(without_tokens(&pages[0].body), without_tokens(&pages[1].body));
        let [page, _] = pages;
        page
    };
    let page = attempt(&wrong(&code));
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("That code is wrong") && page.body.contains("action=\"/sign-in/code/verify\""));
    // the right code inside the window is refused, and not counted
    assert_retry_after(&attempt(&code), 1);
    app.clock.advance(secs(1));
    assert_status(&attempt(&wrong(&code)), StatusCode::UNPROCESSABLE_ENTITY);
    assert_retry_after(&attempt(&code), 2);
    app.clock.advance(secs(2));
    assert_status(&attempt(&wrong(&code)), StatusCode::UNPROCESSABLE_ENTITY);
    assert_retry_after(&attempt(&code), 4);
    app.clock.advance(secs(4));
    known.post("/sign-in/code/verify", &[("code", &code)]).assert_redirect("/account");
    assert_status(&unknown.post("/sign-in/code/verify", &[("code", &code)]), StatusCode::UNPROCESSABLE_ENTITY);
    assert_signed_out(&unknown.get("/account"));
}

/// Two sessions asked for the same account by different identifiers (so different backoff
/// rows, and the second request, inside the cooldown, sent no new code: both wait for one code);
/// eight copies of each send the right code at once. Exactly one signs in.
fn a_code_signs_in_once_under_concurrency(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    let asked = [request_code(&app, "alice"), request_code(&app, ALICE_EMAIL)];
    assert_eq!(queued(&app, ALICE_EMAIL).0, 2, "one sign-in code for both");
    let copies: Vec<(Browser<'_>, String)> = (0..16).map(|i| (asked[i % 2].copy(), asked[i % 2].token())).collect();
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    let pages = at_once(copies.len(), |i| {
        copies[i].0.post_raw("/sign-in/code/verify", &[("csrf_token", &copies[i].1), ("code", &code)])
    });
    let statuses: Vec<_> = pages.iter().map(|p| (p.status, p.location().map(str::to_owned))).collect();
    let signed_in: Vec<usize> = (0..pages.len()).filter(|&i| pages[i].location() == Some("/account")).collect();
    assert_eq!(signed_in.len(), 1, "{statuses:?}");
    for (i, page) in pages.iter().enumerate() {
        if i != signed_in[0] {
            assert!(
                matches!(page.status, StatusCode::UNPROCESSABLE_ENTITY | StatusCode::TOO_MANY_REQUESTS)
                    || page.location() == Some("/sign-in/code"),
                "{statuses:?}"
            );
        }
    }
    assert_signed_in(&copies[signed_in[0]].0);
    // the spent code signs in nobody later
    app.clock.advance(secs(10));
    for browser in &asked {
        let page = browser.post_raw("/sign-in/code/verify", &[("csrf_token", &browser.token()), ("code", &code)]);
        assert!(
            page.status == StatusCode::UNPROCESSABLE_ENTITY || page.location() == Some("/sign-in/code"),
            "{page:?}"
        );
    }
}

fn a_pending_sign_in_is_void_once_the_password_changes(db: &TestDb) {
    let app = spawn(db, &[]);
    let owner = alice(&app);
    past_cooldown(&app);
    let pending = request_code(&app, "alice");
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    owner
        .post("/account/password", &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD)])
        .assert_redirect("/account");
    assert_status(&pending.post("/sign-in/code/verify", &[("code", &code)]), StatusCode::UNPROCESSABLE_ENTITY);
    assert_signed_out(&pending.get("/account"));
    // a new request after the change works
    past_cooldown(&app);
    let fresh = request_code(&app, "alice");
    fresh.post("/sign-in/code/verify", &[("code", &mailed_code(&app, ALICE_EMAIL, 2))]).assert_redirect("/account");
}

fn a_pending_sign_in_is_void_once_its_channel_changes(db: &TestDb) {
    let app = spawn(db, &[]);
    let owner = alice(&app);
    past_cooldown(&app);
    let pending = request_code(&app, ALICE_PHONE);
    let code = texted_code(&app, ALICE_PHONE, 1);
    owner.post("/account", &[("phone", OTHER_PHONE), ("current_password", PASSWORD)]).assert_redirect("/account");
    assert_status(&pending.post("/sign-in/code/verify", &[("code", &code)]), StatusCode::UNPROCESSABLE_ENTITY);
    assert_signed_out(&pending.get("/account"));
}

fn a_pending_sign_in_is_void_once_the_account_is_deleted(db: &TestDb) {
    let app = spawn(db, &[]);
    let owner = alice(&app);
    past_cooldown(&app);
    let pending = request_code(&app, ALICE_EMAIL);
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    owner.get("/account/delete");
    owner.post("/account/delete", &[("current_password", PASSWORD), ("confirm", "delete")]).assert_redirect("/");
    // someone signs up again with the address: the old sign-in is not theirs either
    Browser::new(&app).sign_up(&[("email", ALICE_EMAIL), ("password", PASSWORD)]).assert_redirect("/account");
    assert_status(&pending.post("/sign-in/code/verify", &[("code", &code)]), StatusCode::UNPROCESSABLE_ENTITY);
    assert_signed_out(&pending.get("/account"));
}

fn a_reset_code_does_not_sign_in(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    past_cooldown(&app);
    let pending = request_code(&app, "alice");
    past_cooldown(&app);
    request_reset(&app, "alice");
    // the reset code replaced the sign-in code, and does not sign in
    let reset_code = mailed_code(&app, ALICE_EMAIL, 2);
    assert_status(&pending.post("/sign-in/code/verify", &[("code", &reset_code)]), StatusCode::UNPROCESSABLE_ENTITY);
}
