//! `/account/delete` and `/account/export` (CONTRACT.md, "Sessions, activity, notices"), over
//! HTTP on SQLite and PostgreSQL.

use diesel::prelude::*;
use flex_user::NewUser;
use flex_user::db::schema::{otp_tokens, outbox, sessions, users};
use flex_user::domain::Phone;
use reqwest::StatusCode;
use sha2::Digest as _;

use crate::common::app::{Browser, TestApp};
use crate::common::flows::*;
use crate::common::{TestDb, at_once};

on_both_databases!(
    delete_needs_the_password_and_the_word,
    a_deleted_accounts_identifiers_sign_up_again_but_the_send_limits_stay,
    a_password_less_account_deletes_within_ten_minutes_of_signing_in,
    export_is_an_attachment_without_hashes_codes_or_secrets,
    signed_out_visitors_are_sent_to_sign_in,
    concurrent_wrong_passwords_are_checked_one_per_window,
);

fn count_users(app: &TestApp) -> i64 {
    users::table.count().get_result(&mut *app.pool.get().unwrap()).unwrap()
}

/// Rows anywhere that still belong to user `id`: tokens, sessions, outbox rows with their codes.
fn leftovers(app: &TestApp, id: i64, token_ids: &[i64]) -> (i64, i64, i64) {
    let mut conn = app.pool.get().unwrap();
    let tokens = otp_tokens::table.filter(otp_tokens::user_id.eq(id)).count().get_result(&mut *conn).unwrap();
    let sessions = sessions::table.filter(sessions::user_id.eq(id)).count().get_result(&mut *conn).unwrap();
    let codes = outbox::table.filter(outbox::token_id.eq_any(token_ids)).count().get_result(&mut *conn).unwrap();
    (tokens, sessions, codes)
}

fn token_ids(app: &TestApp, id: i64) -> Vec<i64> {
    otp_tokens::table
        .filter(otp_tokens::user_id.eq(id))
        .select(otp_tokens::id)
        .load(&mut *app.pool.get().unwrap())
        .unwrap()
}

fn delete_needs_the_password_and_the_word(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let other = Browser::new(&app);
    other.sign_in("alice", PASSWORD).assert_redirect("/account");
    let id = user(&app, "alice").unwrap().id;
    let tokens = token_ids(&app, id);
    assert_eq!(leftovers(&app, id, &tokens), (2, 2, 2));

    let account = browser.get("/account");
    assert!(account.body.contains("href=\"/account/delete\"") && account.body.contains("href=\"/account/export\""));
    let form = browser.get("/account/delete");
    assert_status(&form, StatusCode::OK);
    for what in ["alice", ALICE_EMAIL, ALICE_PHONE, "your 2 signed-in sessions end", "cannot be undone"] {
        assert!(form.body.contains(what), "the page says {what} goes: {}", form.body);
    }
    assert!(form.body.contains("name=\"current_password\"") && form.body.contains("name=\"confirm\""));

    for (fields, field) in [
        (vec![("current_password", PASSWORD)], "confirm"),
        (vec![("current_password", PASSWORD), ("confirm", "yes")], "confirm"),
        (vec![("confirm", "delete")], "current_password"),
        (vec![("current_password", "wrong password"), ("confirm", "delete")], "current_password"),
    ] {
        let page = browser.post("/account/delete", &fields);
        assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            page.body.contains(&format!("id=\"delete-{}-error\"", field.replace('_', "-"))),
            "{field}: {}",
            page.body
        );
        assert!(!page.body.contains(PASSWORD), "never a password written back");
        assert_eq!(count_users(&app), 1, "nothing gone");
    }
    // a wrong password opened the sign-in backoff: even the right one waits
    let page = browser.post("/account/delete", &[("current_password", PASSWORD), ("confirm", "delete")]);
    assert_status(&page, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(page.header("retry-after"), Some("1"));
    assert!(page.body.contains("Try again in 1 second"), "{}", page.body);
    assert_eq!(count_users(&app), 1);
    app.clock.advance(secs(1));

    let page = browser.post("/account/delete", &[("current_password", PASSWORD), ("confirm", " Delete ")]);
    page.assert_redirect("/");
    assert_eq!(count_users(&app), 0);
    assert_eq!(leftovers(&app, id, &tokens), (0, 0, 0));
    assert_signed_out(&browser.get("/account"));
    assert_signed_out(&other.get("/account"));
    assert_status(&browser.sign_in("alice", PASSWORD), StatusCode::UNAUTHORIZED);
}

fn a_deleted_accounts_identifiers_sign_up_again_but_the_send_limits_stay(db: &TestDb) {
    let app = spawn(db, &[("FLEX_USER_OTP_DAILY_LIMIT", "2")]);
    let fields = [("username", "alice"), ("email", ALICE_EMAIL), ("phone", ALICE_PHONE), ("password", PASSWORD)];
    let delete = |browser: &Browser<'_>| {
        browser.get("/account/delete");
        browser.post("/account/delete", &[("current_password", PASSWORD), ("confirm", "delete")]).assert_redirect("/");
    };
    let browser = alice(&app);
    delete(&browser);
    past_cooldown(&app);
    // the same identifiers, free again: the second code of the day goes out
    let again = Browser::new(&app);
    again.sign_up(&fields).assert_redirect("/account");
    assert_eq!(queued(&app, ALICE_EMAIL).0, 1);
    app.email_to(ALICE_EMAIL, 1);
    again.get("/account");
    delete(&again);
    past_cooldown(&app);
    // the third: past the daily cap, which deleting did not reset
    let third = Browser::new(&app);
    third.sign_up(&fields).assert_redirect("/account");
    assert_eq!(queued(&app, ALICE_EMAIL).0, 0, "no code: the daily cap still counts");
    assert_eq!(queued(&app, ALICE_PHONE).0, 0);
    third.get("/account");
    let page = third.post("/verify/email/send", &[]);
    assert_status(&page, StatusCode::TOO_MANY_REQUESTS);
}

fn a_password_less_account_deletes_within_ten_minutes_of_signing_in(db: &TestDb) {
    let app = spawn(db, &[]);
    app.accounts.create_user(NewUser::new().phone(Phone::parse(ALICE_PHONE, None).unwrap())).unwrap();
    let sign_in = |nth: usize| {
        let browser = Browser::new(&app);
        browser.get("/sign-in/code");
        browser.post("/sign-in/code", &[("identifier", ALICE_PHONE)]).assert_redirect("/sign-in/code/verify");
        browser.get("/sign-in/code/verify");
        let code = texted_code(&app, ALICE_PHONE, nth);
        browser.post("/sign-in/code/verify", &[("code", &code)]).assert_redirect("/account");
        browser
    };
    let early = sign_in(0);
    let form = early.get("/account/delete");
    assert!(!form.body.contains("name=\"current_password\""), "no password to ask for");
    assert!(form.body.contains("href=\"/sign-in/code?next=/account/delete\""));
    app.clock.advance(chrono::Duration::minutes(10) + secs(1));
    let page = early.post("/account/delete", &[("confirm", "delete")]);
    assert_status(&page, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("within 10 minutes"), "{}", page.body);
    assert_eq!(count_users(&app), 1, "nothing gone");

    let fresh = sign_in(1);
    app.clock.advance(chrono::Duration::minutes(9));
    fresh.get("/account/delete");
    // the word is still needed
    assert_status(&fresh.post("/account/delete", &[("confirm", "")]), StatusCode::UNPROCESSABLE_ENTITY);
    fresh.post("/account/delete", &[("confirm", "delete")]).assert_redirect("/");
    assert_eq!(count_users(&app), 0);
    assert_signed_out(&early.get("/account"));
}

fn export_is_an_attachment_without_hashes_codes_or_secrets(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    browser.get("/verify/email");
    browser.post("/verify/email", &[("code", &mailed_code(&app, ALICE_EMAIL, 0))]).assert_redirect("/account");
    let other = Browser::new(&app);
    other.sign_in(ALICE_PHONE, PASSWORD).assert_redirect("/account");
    // a live code waiting in the outbox and in the token
    past_cooldown(&app);
    browser.get("/account");
    browser.post("/verify/phone/send", &[]).assert_redirect("/verify/phone");
    let live_code = texted_code(&app, ALICE_PHONE, 1);

    let page = browser.get("/account/export");
    assert_status(&page, StatusCode::OK);
    assert!(page.header("content-type").unwrap().starts_with("application/json"), "{:?}", page.headers);
    let disposition = page.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment; filename=") && disposition.contains(".json"), "{disposition}");
    assert_eq!(page.header("cache-control"), Some("no-store"));

    let json: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    let user = &json["user"];
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"]["address"], ALICE_EMAIL);
    assert_eq!(user["email"]["verified"], true);
    assert_eq!(user["phone"]["address"], ALICE_PHONE);
    assert_eq!(user["phone"]["verified"], false);
    assert_eq!(user["has_password"], true);
    assert!(user["date_joined"].is_string() && user["last_login"].is_string());
    let sessions = json["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s["began"].is_string() && s["last_used"].is_string()));

    // nothing secret, by value
    let mut conn = app.pool.get().unwrap();
    let id = flex_user::db::schema::users::table.select(users::id).first::<i64>(&mut *conn).unwrap();
    let hash: String = users::table.find(id).select(users::password).first(&mut *conn).unwrap();
    let code_hashes: Vec<Option<String>> =
        otp_tokens::table.filter(otp_tokens::user_id.eq(id)).select(otp_tokens::code_hash).load(&mut *conn).unwrap();
    let session_hashes: Vec<String> = sessions::table.select(sessions::id_hash).load(&mut *conn).unwrap();
    let mut secrets = vec![hash, "$argon2".to_owned(), live_code.clone(), PASSWORD.to_owned(), "ab".repeat(32)];
    secrets.extend(code_hashes.into_iter().flatten());
    secrets.extend(session_hashes);
    for browser in [&browser, &other] {
        let key = browser.cookie("flex_session").unwrap();
        secrets.push(hex::encode(sha2::Sha256::digest(key.as_bytes())));
        secrets.push(key);
    }
    assert!(secrets.len() >= 9);
    for secret in &secrets {
        assert!(!page.body.contains(secret.as_str()), "the export holds {secret}: {}", page.body);
    }
    // and by name: no field is called anything like a secret (values such as the activity's
    // "signed_in" with "password" say how, and hold nothing)
    fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
                out.push(k.to_lowercase());
                keys(v, out);
            }),
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    keys(&serde_json::from_str(&page.body).expect("the export is JSON"), &mut names);
    assert!(!names.is_empty());
    assert!(!names.iter().any(|n| n == "password"), "the export has a password field: {}", page.body);
    for word in ["hash", "secret", "code", "key", "token", "csrf"] {
        assert!(!names.iter().any(|n| n.contains(word)), "the export has a field like {word}: {}", page.body);
    }
}

fn signed_out_visitors_are_sent_to_sign_in(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = Browser::new(&app);
    for path in ["/account/delete", "/account/export"] {
        let page = browser.get(path);
        assert_status(&page, StatusCode::SEE_OTHER);
        assert_eq!(page.location().unwrap().replace("%2F", "/"), format!("/sign-in?next={path}"));
    }
    browser.get("/sign-in");
    let page = browser.post("/account/delete", &[("confirm", "delete")]);
    assert_status(&page, StatusCode::SEE_OTHER);
}

/// The password typed to delete backs off as a sign-in does: eight guesses at once are checked
/// one per window, and the right password inside that window deletes nothing.
fn concurrent_wrong_passwords_are_checked_one_per_window(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    browser.get("/account/delete");
    let token = browser.token();
    let guesses: Vec<String> = (0..8).map(|n| format!("guess number {n}")).collect();
    let pages = at_once(guesses.len(), |i| {
        browser.post_raw(
            "/account/delete",
            &[("csrf_token", &token), ("current_password", &guesses[i]), ("confirm", "delete")],
        )
    });
    let statuses: Vec<StatusCode> = pages.iter().map(|p| p.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 7, "{statuses:?}");
    let page = browser.post("/account/delete", &[("current_password", PASSWORD), ("confirm", "delete")]);
    assert_status(&page, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(count_users(&app), 1);
    app.clock.advance(secs(1));
    browser.post("/account/delete", &[("current_password", PASSWORD), ("confirm", "delete")]).assert_redirect("/");
    assert_eq!(count_users(&app), 0);
}
