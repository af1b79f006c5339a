//! The site over HTTP, past sign-up and sign-in: the account page, changing identifiers and the
//! password, verifying addresses with codes (cooldown, daily cap, backoff, expiry), the
//! password reset, and what code messages look like. On SQLite and PostgreSQL.

use crate::common::TestDb;
use crate::common::app::Browser;
use crate::common::flows::*;
use flex_user::domain::{Email, Username};
use reqwest::StatusCode;

on_both_databases!(
    account_page_shows_identifiers_and_how_to_verify,
    account_update_keeps_absent_removes_blank_and_ignores_equal_values,
    account_address_changes_need_the_current_password,
    account_update_reshows_taken_invalid_and_all_blank,
    password_change_ends_every_other_session,
    verify_pages_send_new_codes_after_the_cooldown,
    daily_cap_and_limits_that_survive_removing_an_address,
    verify_checks_codes_with_backoff_and_expiry,
    no_live_code_counts_and_missing_or_verified_addresses_go_back,
    reset_request_answers_alike_for_every_account,
    reset_code_goes_to_the_right_channel,
    reset_verify_throttles_known_and_unknown_accounts_alike,
    reset_code_counts_only_for_the_account_asked_for,
    reset_sets_the_password_once_and_ends_every_session,
    reset_through_a_verified_channel_keeps_the_other_addresses,
    code_messages_hold_one_run_of_the_code_length,
);

// ---------------------------------------------------------------------------------------------
// GET /account

fn account_page_shows_identifiers_and_how_to_verify(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let page = browser.get("/account");
    assert_status(&page, StatusCode::OK);
    assert!(row(&page.body, "Username").contains("alice"));
    for (label, channel, address) in [("Email", "email", ALICE_EMAIL), ("Phone", "phone", ALICE_PHONE)] {
        let row = row(&page.body, label);
        assert!(row.contains(address), "{row}");
        assert!(!is_verified(row), "{row}");
        assert!(offers_verification(row, channel), "a way to verify: {row}");
    }

    let code = mailed_code(&app, ALICE_EMAIL, 0);
    browser.post("/verify/email", &[("code", &code)]).assert_redirect("/account");
    let page = browser.get("/account");
    let email = row(&page.body, "Email");
    assert!(is_verified(email) && !offers_verification(email, "email"), "{email}");
    let phone = row(&page.body, "Phone");
    assert!(!is_verified(phone) && offers_verification(phone, "phone"), "{phone}");

    // nothing to verify without addresses
    let bob = Browser::new(&app);
    bob.sign_up(&[("username", "bob"), ("password", PASSWORD)]).assert_redirect("/account");
    let page = bob.get("/account");
    assert!(row(&page.body, "Email").contains("Not set") && row(&page.body, "Phone").contains("Not set"));
    assert!(!page.body.contains("/verify/"), "{}", page.body);
}

// ---------------------------------------------------------------------------------------------
// POST /account

fn account_update_keeps_absent_removes_blank_and_ignores_equal_values(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    browser.post("/verify/email", &[("code", &mailed_code(&app, ALICE_EMAIL, 0))]).assert_redirect("/account");
    browser.post("/verify/phone", &[("code", &texted_code(&app, ALICE_PHONE, 0))]).assert_redirect("/account");

    // absent fields are left as they are; a username change needs no password
    browser.post("/account", &[("username", "alice2")]).assert_redirect("/account");
    assert!(user(&app, "alice").is_none());
    let changed = user(&app, "alice2").expect("renamed");
    assert_eq!(changed.email.as_ref().map(Email::as_str), Some(ALICE_EMAIL));
    assert_eq!(changed.phone.as_ref().map(|p| p.as_str()), Some(ALICE_PHONE));

    // values equal to the stored ones change nothing, need no password and stay verified
    past_cooldown(&app);
    let before = outbox_rows(&app);
    browser
        .post("/account", &[("username", "ALICE2"), ("email", "ALICE@Example.ORG"), ("phone", "+1 (202) 555-1234")])
        .assert_redirect("/account");
    let same = user(&app, "alice2").unwrap();
    assert_eq!(same.username.as_ref().map(Username::as_str), Some("alice2"));
    assert_eq!(same.email.as_ref().map(Email::as_str), Some(ALICE_EMAIL));
    assert_eq!(same.phone.as_ref().map(|p| p.as_str()), Some(ALICE_PHONE));
    let page = browser.get("/account");
    assert!(is_verified(row(&page.body, "Email")) && is_verified(row(&page.body, "Phone")));
    assert_eq!(outbox_rows(&app), before, "nothing sent for an unchanged value");

    // a blank field removes that identifier (an address needs the password)
    browser.post("/account", &[("phone", ""), ("current_password", PASSWORD)]).assert_redirect("/account");
    assert!(user(&app, "alice2").unwrap().phone.is_none());
    let page = browser.get("/account");
    assert!(row(&page.body, "Phone").contains("Not set"));
    assert!(is_verified(row(&page.body, "Email")), "the other address is untouched");
    // the old phone is told, without a code
    assert_eq!(queued(&app, ALICE_PHONE), (1, 1));
    let notice = app.sms_to(ALICE_PHONE, 1);
    assert!(notice.contains("changed or removed") && !digit_runs(&notice).iter().any(|r| r.len() >= 6), "{notice}");

    browser.post("/account", &[("username", "")]).assert_redirect("/account");
    let user = user(&app, ALICE_EMAIL).unwrap();
    assert!(user.username.is_none() && user.email.is_some());
}

fn account_address_changes_need_the_current_password(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let missing = "Enter your current password to change or remove your email or phone.";
    let wrong_password = "That is not your current password.";
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("email", "new@example.org")], missing),
        (&[("email", "new@example.org"), ("current_password", "not my password")], wrong_password),
        (&[("email", "")], missing),
        (&[("phone", "")], missing),
        (&[("phone", OTHER_PHONE), ("current_password", "not my password")], wrong_password),
    ];
    for (fields, message) in cases {
        let page = browser.post("/account", fields);
        assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.body.contains(message), "{fields:?}: {}", page.body);
        assert!(
            page.body.contains("aria-invalid=\"true\"") && page.body.contains("id=\"acct-current-password-error\"")
        );
        assert!(!page.body.contains("not my password"), "never a password");
        if let Some((_, typed)) = fields.iter().find(|(name, value)| *name == "email" && !value.is_empty()) {
            assert!(page.body.contains(&format!("value=\"{typed}\"")), "typed value kept");
        }
        let unchanged = user(&app, "alice").unwrap();
        assert_eq!(unchanged.email.as_ref().map(Email::as_str), Some(ALICE_EMAIL));
        assert_eq!(unchanged.phone.as_ref().map(|p| p.as_str()), Some(ALICE_PHONE));
    }
    assert_eq!(queued(&app, ALICE_EMAIL), (1, 0), "nothing sent");
    assert_eq!(queued(&app, ALICE_PHONE), (1, 0), "nothing sent");

    // with the password: the new email is unverified and gets a code; the old one is told
    let fields = [("email", " New@Example.org "), ("current_password", PASSWORD)];
    browser.post("/account", &fields).assert_redirect("/account");
    let page = browser.get("/account");
    let email = row(&page.body, "Email");
    assert!(email.contains("New@example.org") && !is_verified(email), "{email}");
    let notice = plain_text(&app.email_to(ALICE_EMAIL, 1));
    assert!(notice.contains("changed") && !digit_runs(&notice).iter().any(|r| r.len() >= 6), "{notice}");
    let code = mailed_code(&app, "New@example.org", 0);
    browser.post("/verify/email", &[("code", &code)]).assert_redirect("/account");
    assert!(is_verified(row(&browser.get("/account").body, "Email")));
    assert!(user(&app, ALICE_EMAIL).is_none());

    // the phone likewise, typed differently
    browser
        .post("/account", &[("phone", "+1 202-555-9876"), ("current_password", PASSWORD)])
        .assert_redirect("/account");
    let phone = row(&browser.get("/account").body, "Phone").to_owned();
    assert!(phone.contains(OTHER_PHONE) && !is_verified(&phone), "{phone}");
    texted_code(&app, OTHER_PHONE, 0);
    let notice = app.sms_to(ALICE_PHONE, 1);
    assert!(!digit_runs(&notice).iter().any(|r| r.len() >= 6), "a notice without a code: {notice}");
    assert_eq!(queued(&app, ALICE_PHONE), (1, 1));
}

fn account_update_reshows_taken_invalid_and_all_blank(db: &TestDb) {
    let app = spawn(db, &[]);
    Browser::new(&app)
        .sign_up(&[("username", "bob"), ("email", "bob@example.org"), ("phone", OTHER_PHONE), ("password", PASSWORD)])
        .assert_redirect("/account");
    let browser = alice(&app);
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
    let cases: [Case; 7] = [
        (&[("username", "BOB")], "A user with that username already exists.", Some("BOB")),
        (
            &[("email", "Bob@example.org"), ("current_password", PASSWORD)],
            "A user with that email address already exists.",
            Some("Bob@example.org"),
        ),
        (
            &[("phone", "+1 202 555 9876"), ("current_password", PASSWORD)],
            "A user with that phone number already exists.",
            Some("+1 202 555 9876"),
        ),
        (&[("username", ".bad")], "", Some(".bad")),
        (&[("email", "not-an-email"), ("current_password", PASSWORD)], "Enter a valid email address.", None),
        (&[("phone", "+1 12345"), ("current_password", PASSWORD)], "Enter a valid phone number", Some("+1 12345")),
        (
            &[("username", ""), ("email", ""), ("phone", ""), ("current_password", PASSWORD)],
            "You must supply at least one of username, email address or phone number.",
            None,
        ),
    ];
    for (fields, message, kept) in cases {
        let page = browser.post("/account", fields);
        assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.body.contains("action=\"/account\""));
        assert!(page.body.contains(message), "{fields:?}: {}", page.body);
        if message.is_empty() {
            assert!(page.body.contains("id=\"acct-username-error\""), "{}", page.body);
        }
        if let Some(kept) = kept {
            assert!(page.body.contains(&format!("value=\"{kept}\"")), "{fields:?}: typed value kept");
        }
        assert!(!page.body.contains(PASSWORD), "never a password");
        let unchanged = user(&app, "alice").expect("alice unchanged");
        assert_eq!(unchanged.email.as_ref().map(Email::as_str), Some(ALICE_EMAIL));
        assert_eq!(unchanged.phone.as_ref().map(|p| p.as_str()), Some(ALICE_PHONE));
    }
    assert_eq!(user(&app, "bob").unwrap().email.unwrap().as_str(), "bob@example.org");
}

// ---------------------------------------------------------------------------------------------
// POST /account/password

fn password_change_ends_every_other_session(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let other = Browser::new(&app);
    other.sign_in("alice", PASSWORD).assert_redirect("/account");
    let copied = browser.copy();

    let page =
        browser.post("/account/password", &[("current_password", "not my password"), ("new_password", NEW_PASSWORD)]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("That is not your current password."));
    assert!(!page.body.contains("not my password") && !page.body.contains(NEW_PASSWORD), "never a password");
    for weak in ["12345678", "short1", "password"] {
        let page = browser.post("/account/password", &[("current_password", PASSWORD), ("new_password", weak)]);
        assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.body.contains("id=\"pw-new-password-error\""), "{weak}: {}", page.body);
    }
    assert_eq!(other.get("/account").status, StatusCode::OK, "nothing ended by a refusal");
    assert!(app.accounts.authenticate("alice", PASSWORD).unwrap().is_some());

    browser
        .post("/account/password", &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD)])
        .assert_redirect("/account");
    assert_eq!(browser.get("/account").status, StatusCode::OK, "this session carries on");
    assert_signed_out(&other.get("/account"));
    assert_signed_out(&copied.get("/account"));
    // and this one still posts forms
    browser.post("/account", &[("username", "alice3")]).assert_redirect("/account");

    let fresh = Browser::new(&app);
    assert_eq!(fresh.sign_in("alice3", PASSWORD).status, StatusCode::UNAUTHORIZED);
    app.clock.advance(secs(1));
    fresh.sign_in("alice3", NEW_PASSWORD).assert_redirect("/account");
}

// ---------------------------------------------------------------------------------------------
// /verify/email, /verify/phone

fn verify_pages_send_new_codes_after_the_cooldown(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    for channel in ["email", "phone"] {
        let page = browser.get(&format!("/verify/{channel}"));
        assert_status(&page, StatusCode::OK);
        assert!(page.body.contains(&format!("action=\"/verify/{channel}\"")));
        assert!(page.body.contains("autocomplete=\"one-time-code\"") && page.body.contains("inputmode=\"numeric\""));
        // the sign-up code started the cooldown
        let page = browser.post(&format!("/verify/{channel}/send"), &[]);
        assert_retry_after(&page, 60);
    }
    assert_eq!((queued(&app, ALICE_EMAIL).0, queued(&app, ALICE_PHONE).0), (1, 1));

    app.clock.advance(secs(60));
    let first = [mailed_code(&app, ALICE_EMAIL, 0), texted_code(&app, ALICE_PHONE, 0)];
    for (channel, old) in ["email", "phone"].into_iter().zip(first) {
        browser.post(&format!("/verify/{channel}/send"), &[]).assert_redirect(&format!("/verify/{channel}"));
        assert_retry_after(&browser.post(&format!("/verify/{channel}/send"), &[]), 60);
        let new =
            if channel == "email" { mailed_code(&app, ALICE_EMAIL, 1) } else { texted_code(&app, ALICE_PHONE, 1) };
        if new != old {
            let page = browser.post(&format!("/verify/{channel}"), &[("code", &old)]);
            assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
            app.clock.advance(secs(1));
        }
        browser.post(&format!("/verify/{channel}"), &[("code", &new)]).assert_redirect("/account");
    }
    let page = browser.get("/account");
    assert!(is_verified(row(&page.body, "Email")) && is_verified(row(&page.body, "Phone")));
}

fn daily_cap_and_limits_that_survive_removing_an_address(db: &TestDb) {
    let app = spawn(db, &[("FLEX_USER_OTP_DAILY_LIMIT", "3")]);
    let browser = alice(&app);
    for n in 1..3 {
        past_cooldown(&app);
        for channel in ["email", "phone"] {
            browser.post(&format!("/verify/{channel}/send"), &[]).assert_redirect(&format!("/verify/{channel}"));
        }
        app.email_to(ALICE_EMAIL, n);
        app.sms_to(ALICE_PHONE, n);
    }
    past_cooldown(&app);
    for channel in ["email", "phone"] {
        let page = browser.post(&format!("/verify/{channel}/send"), &[]);
        assert_status(&page, StatusCode::TOO_MANY_REQUESTS);
        // the first of the three falls out of the day 24 h after sign-up, 3 × 61 s ago
        let wait: u64 = page.header("retry-after").expect("Retry-After").parse().unwrap();
        assert_eq!(wait, 86_400 - 3 * 61, "{channel}");
        assert!(page.body.contains(&format!("Try again in {wait} seconds")), "{}", page.body);
    }
    assert_eq!((queued(&app, ALICE_EMAIL).0, queued(&app, ALICE_PHONE).0), (3, 3));

    // removing the email and adding it back (in other letters) resets nothing; the change
    // itself still succeeds, with no code
    browser.post("/account", &[("email", ""), ("current_password", PASSWORD)]).assert_redirect("/account");
    browser
        .post("/account", &[("email", "ALICE@example.org"), ("current_password", PASSWORD)])
        .assert_redirect("/account");
    let email = row(&browser.get("/account").body, "Email").to_owned();
    assert!(email.contains("ALICE@example.org") && !is_verified(&email), "{email}");
    assert_eq!(queued(&app, ALICE_EMAIL).0, 3, "no code past the cap");
    assert_status(&browser.post("/verify/email/send", &[]), StatusCode::TOO_MANY_REQUESTS);
    // a password reset answers as usual, and sends no code
    request_reset(&app, "alice");
    assert_eq!(queued(&app, ALICE_EMAIL).0, 3, "no code past the cap");

    // sign-up with an address past its cap succeeds and sends no code
    browser.post("/account", &[("phone", ""), ("current_password", PASSWORD)]).assert_redirect("/account");
    let other = Browser::new(&app);
    other.sign_up(&[("phone", "+1 202 555 1234"), ("password", PASSWORD)]).assert_redirect("/account");
    assert!(!is_verified(row(&other.get("/account").body, "Phone")));
    assert_eq!(queued(&app, ALICE_PHONE).0, 3, "no code past the cap");
    assert_status(&other.post("/verify/phone/send", &[]), StatusCode::TOO_MANY_REQUESTS);

    // a day after the first code, one more fits
    app.clock.advance(secs(86_400 - 3 * 61));
    other.post("/verify/phone/send", &[]).assert_redirect("/verify/phone");
    assert_eq!(queued(&app, ALICE_PHONE).0, 4);
}

fn verify_checks_codes_with_backoff_and_expiry(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let code = mailed_code(&app, ALICE_EMAIL, 0);
    let sms = texted_code(&app, ALICE_PHONE, 0);

    let page = browser.post("/verify/email", &[("code", &wrong(&code))]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("That code is wrong") && page.body.contains("action=\"/verify/email\""));
    // inside the window even the right code is refused, and not counted
    assert_retry_after(&browser.post("/verify/email", &[("code", &code)]), 1);
    assert_retry_after(&browser.post("/verify/email", &[("code", &code)]), 1);
    app.clock.advance(secs(1));
    assert_status(&browser.post("/verify/email", &[("code", &wrong(&code))]), StatusCode::UNPROCESSABLE_ENTITY);
    assert_retry_after(&browser.post("/verify/email", &[("code", &code)]), 2);
    app.clock.advance(secs(1));
    assert_retry_after(&browser.post("/verify/email", &[("code", &code)]), 1);
    app.clock.advance(secs(1));
    browser.post("/verify/email", &[("code", &code)]).assert_redirect("/account");
    let page = browser.get("/account");
    assert!(is_verified(row(&page.body, "Email")));
    assert!(!is_verified(row(&page.body, "Phone")), "only that address");

    // an expired code fails
    app.clock.advance(secs(900));
    let page = browser.post("/verify/phone", &[("code", &sms)]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    app.clock.advance(secs(1));
    assert!(!is_verified(row(&browser.get("/account").body, "Phone")));
    // a new code works
    browser.post("/verify/phone/send", &[]).assert_redirect("/verify/phone");
    let fresh = texted_code(&app, ALICE_PHONE, 1);
    browser.post("/verify/phone", &[("code", &fresh)]).assert_redirect("/account");
    assert!(is_verified(row(&browser.get("/account").body, "Phone")));
}

fn no_live_code_counts_and_missing_or_verified_addresses_go_back(db: &TestDb) {
    let app = spawn(db, &[]);
    let new = flex_user::NewUser::new()
        .username(Username::parse("dave").unwrap())
        .email(Email::parse("dave@example.org").unwrap())
        .password(PASSWORD);
    app.accounts.create_user(new).unwrap();
    let browser = Browser::new(&app);
    browser.sign_in("dave", PASSWORD).assert_redirect("/account");
    browser.get("/account");

    // no code was ever made: a failure, and counted
    assert_status(&browser.post("/verify/email", &[("code", "123456")]), StatusCode::UNPROCESSABLE_ENTITY);
    assert_retry_after(&browser.post("/verify/email", &[("code", "123456")]), 1);

    // an address the user does not have
    for page in [
        browser.get("/verify/phone"),
        browser.post("/verify/phone/send", &[]),
        browser.post("/verify/phone", &[("code", "123456")]),
    ] {
        page.assert_redirect("/account");
    }
    assert_eq!(outbox_rows(&app), 0, "nothing sent");

    // an address already verified
    app.clock.advance(secs(1));
    browser.post("/verify/email/send", &[]).assert_redirect("/verify/email");
    let code = mailed_code(&app, "dave@example.org", 0);
    browser.post("/verify/email", &[("code", &code)]).assert_redirect("/account");
    past_cooldown(&app);
    let before = outbox_rows(&app);
    for page in [
        browser.get("/verify/email"),
        browser.post("/verify/email/send", &[]),
        browser.post("/verify/email", &[("code", &wrong(&code))]),
        browser.post("/verify/email", &[("code", &wrong(&code))]),
    ] {
        page.assert_redirect("/account");
    }
    assert_eq!(outbox_rows(&app), before, "nothing sent");
    let token = app.accounts.email_token(user(&app, "dave").unwrap().id).unwrap().unwrap();
    assert!(token.state.verified && token.state.backoff.failures == 0, "nothing counted: {token:?}");
}

// ---------------------------------------------------------------------------------------------
// password reset

fn reset_request_answers_alike_for_every_account(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    Browser::new(&app).get("/password-reset/verify").assert_redirect("/password-reset");
    let form = Browser::new(&app).get("/password-reset");
    assert_status(&form, StatusCode::OK);
    assert!(form.body.contains("name=\"identifier\""));

    for (known, unknown) in
        [(ALICE_EMAIL, "nobody@example.org"), ("alice", "nobody"), ("+1 202 555 1234", "+1 202 555 9876")]
    {
        past_cooldown(&app);
        let (k, u) = (Browser::new(&app), Browser::new(&app));
        k.get("/password-reset");
        u.get("/password-reset");
        let (pk, pu) = (
            k.post("/password-reset", &[("identifier", known)]),
            u.post("/password-reset", &[("identifier", unknown)]),
        );
        pk.assert_redirect("/password-reset/verify");
        pu.assert_redirect("/password-reset/verify");
        assert_eq!(cookie_shapes(&pk), cookie_shapes(&pu), "{known} / {unknown}");
        assert!(cookie_shapes(&pk).iter().any(|c| c.starts_with("flex_session;")), "{:?}", pk.set_cookies());
        assert_eq!(pk.body, pu.body);
        let (vk, vu) = (k.get("/password-reset/verify"), u.get("/password-reset/verify"));
        assert_status(&vk, StatusCode::OK);
        assert_eq!((vk.status, without_tokens(&vk.body)), (vu.status, without_tokens(&vu.body)));
        assert!(vk.body.contains("autocomplete=\"one-time-code\"") && vk.body.contains("inputmode=\"numeric\""));
    }
    // the known ones really got codes
    assert_eq!(queued(&app, ALICE_EMAIL).0, 3);
    assert_eq!(queued(&app, ALICE_PHONE).0, 2);
}

fn reset_code_goes_to_the_right_channel(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    Browser::new(&app)
        .sign_up(&[("username", "carol"), ("phone", OTHER_PHONE), ("password", PASSWORD)])
        .assert_redirect("/account");
    app.sms_to(OTHER_PHONE, 0);
    past_cooldown(&app);

    // a username with an email: the email
    request_reset(&app, "alice");
    assert_eq!((queued(&app, ALICE_EMAIL).0, queued(&app, ALICE_PHONE).0), (2, 1));
    assert!(plain_text(&app.email_to(ALICE_EMAIL, 1)).contains("reset the password"));
    // a phone: the phone
    past_cooldown(&app);
    request_reset(&app, "+1 (202) 555-1234");
    assert_eq!((queued(&app, ALICE_EMAIL).0, queued(&app, ALICE_PHONE).0), (2, 2));
    assert!(app.sms_to(ALICE_PHONE, 1).contains("password reset code"));
    // an email: the email
    request_reset(&app, "ALICE@example.org");
    assert_eq!((queued(&app, ALICE_EMAIL).0, queued(&app, ALICE_PHONE).0), (3, 2));
    // a username with only a phone: the phone
    request_reset(&app, "carol");
    assert_eq!(queued(&app, OTHER_PHONE).0, 2);
    assert!(app.sms_to(OTHER_PHONE, 1).contains("password reset code"));
}

fn reset_verify_throttles_known_and_unknown_accounts_alike(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    let mut mails = 1;
    for (known_identifier, unknown_identifier) in [(ALICE_EMAIL, "nobody@example.org"), ("alice", "nobody")] {
        past_cooldown(&app);
        let known = request_reset(&app, known_identifier);
        let unknown = request_reset(&app, unknown_identifier);
        let mut code = mailed_code(&app, ALICE_EMAIL, mails);
        mails += 1;
        let attempt = |code: &str| {
            let pages = [
                known.post("/password-reset/verify", &[("code", code)]),
                unknown.post("/password-reset/verify", &[("code", code)]),
            ];
            assert_eq!(pages[0].status, pages[1].status, "{known_identifier} / {unknown_identifier}");
            assert_eq!(pages[0].header("retry-after"), pages[1].header("retry-after"), "{known_identifier}");
            assert_eq!(without_tokens(&pages[0].body), without_tokens(&pages[1].body));
            let [page, _] = pages;
            page
        };
        let ask_again = || {
            for (browser, identifier) in [(&known, known_identifier), (&unknown, unknown_identifier)] {
                let page = browser.post("/password-reset", &[("identifier", identifier)]);
                page.assert_redirect("/password-reset/verify");
            }
        };

        let page = attempt(&wrong(&code));
        assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.body.contains("That code is wrong") && page.body.contains("action=\"/password-reset/verify\""));
        assert_retry_after(&attempt(&code), 1);
        app.clock.advance(secs(1));
        assert_status(&attempt(&wrong(&code)), StatusCode::UNPROCESSABLE_ENTITY);
        assert_retry_after(&attempt(&code), 2);
        app.clock.advance(secs(2));

        // asking again inside the resend cooldown makes no code: the count goes on
        ask_again();
        assert_status(&attempt(&wrong(&code)), StatusCode::UNPROCESSABLE_ENTITY);
        assert_retry_after(&attempt(&code), 4);
        app.clock.advance(secs(4));
        // past it, a new code starts the count again, for an unknown account too
        past_cooldown(&app);
        ask_again();
        code = mailed_code(&app, ALICE_EMAIL, mails);
        mails += 1;
        assert_status(&attempt(&wrong(&code)), StatusCode::UNPROCESSABLE_ENTITY);
        assert_retry_after(&attempt(&code), 1);
        app.clock.advance(secs(1));

        known.post("/password-reset/verify", &[("code", &code)]).assert_redirect("/password-reset/new");
        // an unknown account never gets further
        assert_status(&unknown.post("/password-reset/verify", &[("code", &code)]), StatusCode::UNPROCESSABLE_ENTITY);
        unknown.get("/password-reset/new").assert_redirect("/password-reset");
        assert_status(&known.get("/password-reset/new"), StatusCode::OK);
        // the password may be set only within the code's lifetime
        app.clock.advance(secs(900));
        known.get("/password-reset/new").assert_redirect("/password-reset");
        known.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]).assert_redirect("/password-reset");
    }
    assert!(app.accounts.authenticate("alice", PASSWORD).unwrap().is_some(), "nothing changed");
}

fn reset_code_counts_only_for_the_account_asked_for(db: &TestDb) {
    let app = spawn(db, &[]);
    alice(&app);
    Browser::new(&app).sign_up(&[("email", "bob@example.org"), ("password", PASSWORD)]).assert_redirect("/account");
    app.email_to("bob@example.org", 0);
    past_cooldown(&app);
    let for_alice = request_reset(&app, "alice");
    let for_bob = request_reset(&app, "bob@example.org");
    let (alice_code, bob_code) = (mailed_code(&app, ALICE_EMAIL, 1), mailed_code(&app, "bob@example.org", 1));

    // no verified code yet: nothing to set
    for browser in [&for_alice, &Browser::new(&app)] {
        browser.get("/password-reset/new").assert_redirect("/password-reset");
        browser.get("/password-reset");
        browser.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]).assert_redirect("/password-reset");
    }
    assert!(app.accounts.authenticate("alice", PASSWORD).unwrap().is_some(), "nothing changed");

    if alice_code != bob_code {
        let page = for_alice.post("/password-reset/verify", &[("code", &bob_code)]);
        assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
        app.clock.advance(secs(1));
    }
    for_bob.post("/password-reset/verify", &[("code", &bob_code)]).assert_redirect("/password-reset/new");
    for_alice.post("/password-reset/verify", &[("code", &alice_code)]).assert_redirect("/password-reset/new");
    for_bob.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]).assert_redirect("/sign-in");
    assert!(app.accounts.authenticate("bob@example.org", NEW_PASSWORD).unwrap().is_some());
    assert!(app.accounts.authenticate("alice", PASSWORD).unwrap().is_some(), "alice untouched by bob's reset");
}

fn reset_sets_the_password_once_and_ends_every_session(db: &TestDb) {
    let app = spawn(db, &[]);
    let signed_in = alice(&app);
    let elsewhere = Browser::new(&app);
    elsewhere.sign_in(ALICE_PHONE, PASSWORD).assert_redirect("/account");
    past_cooldown(&app);

    let reset = request_reset(&app, "alice");
    // asked again within the cooldown: no new code, the same one stands
    let second = request_reset(&app, ALICE_EMAIL);
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    reset.post("/password-reset/verify", &[("code", &code)]).assert_redirect("/password-reset/new");
    // the code is used up
    let page = second.post("/password-reset/verify", &[("code", &code)]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    second.get("/password-reset/new").assert_redirect("/password-reset");
    assert_eq!(queued(&app, ALICE_EMAIL).0, 2);
    let form = reset.get("/password-reset/new");
    assert_status(&form, StatusCode::OK);
    assert!(form.body.contains("autocomplete=\"new-password\""));
    for weak in ["12345678", "alice123", "password"] {
        let page = reset.post("/password-reset/new", &[("new_password", weak)]);
        assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.body.contains("id=\"new_password-error\""), "{weak}: {}", page.body);
    }
    assert_eq!(signed_in.get("/account").status, StatusCode::OK, "nothing ended by a refusal");
    assert!(app.accounts.authenticate("alice", PASSWORD).unwrap().is_some());

    reset.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]).assert_redirect("/sign-in");
    for browser in [&signed_in, &elsewhere] {
        assert_signed_out(&browser.get("/account"));
    }
    assert!(app.accounts.authenticate("alice", PASSWORD).unwrap().is_none());
    // only once
    reset.get("/password-reset/new").assert_redirect("/password-reset");
    reset.get("/password-reset");
    reset.post("/password-reset/new", &[("new_password", "another fine password")]).assert_redirect("/password-reset");
    assert!(app.accounts.authenticate("alice", "another fine password").unwrap().is_none());

    let browser = Browser::new(&app);
    browser.sign_in("alice", NEW_PASSWORD).assert_redirect("/account");
    // the email got the code, so it is verified; it was not before, so the phone (never proven
    // by the same person) is gone
    let page = browser.get("/account");
    assert!(is_verified(row(&page.body, "Email")));
    assert!(row(&page.body, "Phone").contains("Not set"), "{}", row(&page.body, "Phone"));
    assert!(user(&app, "alice").unwrap().phone.is_none());
    assert!(user(&app, ALICE_PHONE).is_none());
}

fn reset_through_a_verified_channel_keeps_the_other_addresses(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    browser.post("/verify/phone", &[("code", &texted_code(&app, ALICE_PHONE, 0))]).assert_redirect("/account");
    Browser::new(&app)
        .sign_up(&[("username", "bob"), ("email", "bob@example.org"), ("phone", OTHER_PHONE), ("password", PASSWORD)])
        .assert_redirect("/account");
    app.sms_to(OTHER_PHONE, 0);
    past_cooldown(&app);

    let reset = |identifier: &str, phone: &str| {
        let browser = request_reset(&app, identifier);
        let code = texted_code(&app, phone, 1);
        browser.post("/password-reset/verify", &[("code", &code)]).assert_redirect("/password-reset/new");
        browser.post("/password-reset/new", &[("new_password", NEW_PASSWORD)]).assert_redirect("/sign-in");
    };
    // alice's phone was verified before: her email stays (still unverified)
    reset(ALICE_PHONE, ALICE_PHONE);
    let alice = user(&app, "alice").unwrap();
    assert_eq!(alice.email.as_ref().map(Email::as_str), Some(ALICE_EMAIL));
    assert!(!app.accounts.email_token(alice.id).unwrap().unwrap().state.verified);
    assert!(app.accounts.phone_token(alice.id).unwrap().unwrap().state.verified);
    assert!(app.accounts.authenticate("alice", NEW_PASSWORD).unwrap().is_some());

    // bob's phone was not: it is verified now and his email is gone
    reset("+1 202 555 9876", OTHER_PHONE);
    let bob = user(&app, "bob").unwrap();
    assert!(bob.email.is_none() && app.accounts.email_token(bob.id).unwrap().is_none());
    assert!(app.accounts.phone_token(bob.id).unwrap().unwrap().state.verified);
    assert!(user(&app, "bob@example.org").is_none());
}

// ---------------------------------------------------------------------------------------------
// messages

fn code_messages_hold_one_run_of_the_code_length(db: &TestDb) {
    for len in [4usize, 6, 8] {
        let length = len.to_string();
        let app = spawn(db, &[("FLEX_USER_OTP_LENGTH", &length)]);
        let browser = Browser::new(&app);
        let email = format!("m{len}@example.org");
        let phone = format!("+1202555{:04}", 1000 + len);
        browser.sign_up(&[("email", &email), ("phone", &phone), ("password", PASSWORD)]).assert_redirect("/account");

        let check_email = |nth: usize| {
            let text = plain_text(&app.email_to(&email, nth));
            sole_code(&text, len)
        };
        let check_sms = |nth: usize| {
            let sms = app.sms_to(&phone, nth);
            let (text, webotp) = sms.trim_end().rsplit_once('\n').expect("a WebOTP line");
            let code = sole_code(text, len);
            assert_eq!(webotp, format!("@auth.test #{code}"), "{sms:?}");
            assert!(sms.trim_end().ends_with(&format!("@auth.test #{code}")));
            code
        };
        let email_code = check_email(0);
        let sms_code = check_sms(0);
        browser.get("/account");
        browser.post("/verify/email", &[("code", &email_code)]).assert_redirect("/account");
        browser.post("/verify/phone", &[("code", &sms_code)]).assert_redirect("/account");

        // reset codes, by email and by SMS
        past_cooldown(&app);
        let by_email = request_reset(&app, &email);
        let by_phone = request_reset(&app, &phone);
        let (email_code, sms_code) = (check_email(1), check_sms(1));
        by_email.post("/password-reset/verify", &[("code", &email_code)]).assert_redirect("/password-reset/new");
        by_phone.post("/password-reset/verify", &[("code", &sms_code)]).assert_redirect("/password-reset/new");
    }
}
