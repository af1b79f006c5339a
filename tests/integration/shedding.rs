//! Load shedding: when every place in the argon2 pool is taken, work that hashes a password is
//! refused at once with 503 and `Retry-After`, the same page for every account, and nothing is
//! read, counted or changed. The test holds the pool's places itself (through the library, on the
//! server's own pool), so "full" is exact rather than a race against a load.

use crate::common::TestDb;
use crate::common::app::{Browser, Page};
use crate::common::flows::{NEW_PASSWORD, PASSWORD, alice, spawn, user};
use reqwest::StatusCode;

on_both_databases!(a_full_hashing_pool_sheds_at_once_and_changes_nothing);

fn assert_shed(page: &Page) -> u64 {
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{}", page.body);
    let wait: u64 = page.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(page.body.contains("Busy right now"), "{}", page.body);
    assert!(page.body.contains(&format!("Try again in {wait} second")), "{}", page.body);
    wait
}

fn a_full_hashing_pool_sheds_at_once_and_changes_nothing(db: &TestDb) {
    // one thread and one queued request: two places
    let app = spawn(db, &[("FLEX_USER_HASH_THREADS", "1"), ("FLEX_USER_HASH_QUEUE", "1")]);
    let signed_in = alice(&app);
    let passwords = app.accounts.passwords();
    let held = [passwords.admit().unwrap(), passwords.admit().unwrap()];
    let shed_before = passwords.load().shed;

    // sign-in: a known account (right or wrong password) and an unknown one get the same page
    let visitor = Browser::new(&app);
    let pages = [
        visitor.sign_in("alice", "not her password"),
        visitor.sign_in("alice", PASSWORD),
        visitor.sign_in("nobody-here", PASSWORD),
    ];
    for page in &pages {
        assert_shed(page);
    }
    assert_eq!(pages[0].body, pages[2].body, "known and unknown accounts are shed alike");
    assert_eq!(visitor.get("/account").location(), Some("/sign-in?next=/account"), "not signed in");

    // sign-up and a password change are shed too, and change nothing
    assert_shed(&Browser::new(&app).sign_up(&[("username", "bob"), ("password", PASSWORD)]));
    assert!(user(&app, "bob").is_none());
    signed_in.get("/account");
    assert_shed(
        &signed_in.post("/account/password", &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD)]),
    );
    assert_eq!(passwords.load().shed, shed_before + 5);
    assert_eq!(passwords.load().queued, 0, "nothing was queued");

    // once places free up: the shed wrong password opened no backoff window (an immediate
    // attempt is not 429) and the password is unchanged
    drop(held);
    Browser::new(&app).sign_in("alice", PASSWORD).assert_redirect("/account");
    assert!(app.accounts.authenticate("alice", NEW_PASSWORD).unwrap().is_none());
    Browser::new(&app).sign_up(&[("username", "bob"), ("password", PASSWORD)]).assert_redirect("/account");
}
