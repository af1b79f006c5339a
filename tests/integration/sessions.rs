//! The sessions page (CONTRACT.md, "Sessions, activity, notices"): `GET /account/sessions` and
//! `POST /account/sessions/end`, over HTTP on both databases.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use flex_user::db::schema::sessions;
use reqwest::StatusCode;

use crate::common::TestDb;
use crate::common::app::{Browser, Page, TestApp};
use crate::common::flows::*;

pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub const CHROME: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/131.0.6778.39 Mobile Safari/537.36";
pub const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
                          Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// The `class="… session …"` elements of the sessions page, each as its HTML.
pub fn session_elements(page: &Page) -> Vec<String> {
    elements(&page.body, "<li class=\"card session")
}

/// The pieces of `body` from each `start` to the `</li>` closing it.
pub fn elements(body: &str, start: &str) -> Vec<String> {
    body.match_indices(start)
        .map(|(at, _)| {
            let rest = &body[at..];
            rest[..rest.find("</li>").expect("the element ends")].to_owned()
        })
        .collect()
}

/// The public id the "end" form of this session element posts.
pub fn end_id(element: &str) -> Option<String> {
    let at = element.find("name=\"session\" value=\"")? + "name=\"session\" value=\"".len();
    Some(element[at..at + element[at..].find('"')?].to_owned())
}

/// Alice signed up with Firefox, and signed in with Chrome: (firefox, chrome).
fn two_browsers(app: &TestApp) -> (Browser<'_>, Browser<'_>) {
    let firefox = Browser::with_agent(app, FIREFOX);
    firefox
        .sign_up(&[("username", "alice"), ("email", ALICE_EMAIL), ("password", PASSWORD)])
        .assert_redirect("/account");
    let chrome = Browser::with_agent(app, CHROME);
    chrome.sign_in("alice", PASSWORD).assert_redirect("/account");
    (firefox, chrome)
}

fn sessions_page(browser: &Browser) -> Page {
    let page = browser.get("/account/sessions");
    assert_status(&page, StatusCode::OK);
    page
}

fn signed_in(browser: &Browser) -> bool {
    browser.get("/account").status == StatusCode::OK
}

fn two_clients_are_listed_and_one_ends_the_other(db: &TestDb) {
    let app = spawn(db, &[]);
    let (firefox, chrome) = two_browsers(&app);
    let page = sessions_page(&firefox);
    let listed = session_elements(&page);
    assert_eq!(listed.len(), 2, "{}", page.body);
    let mine = listed.iter().find(|s| s.contains("Firefox on Linux")).expect("Firefox listed");
    let other = listed.iter().find(|s| s.contains("Chrome on Android")).expect("Chrome listed");
    for s in &listed {
        assert!(s.contains("127.0.0.1") && s.contains("Signed in") && s.contains("Last used"), "{s}");
        assert!(s.contains("<time datetime=\""), "{s}");
    }
    assert!(mine.contains("This browser") && end_id(mine).is_none(), "no end form on this one: {mine}");
    assert!(!other.contains("This browser"), "{other}");
    let id = end_id(other).expect("an end form for the other");
    // seen from the other side, the same two
    let from_chrome = session_elements(&sessions_page(&chrome));
    assert!(from_chrome.iter().any(|s| s.contains("Chrome on Android") && s.contains("This browser")));

    // the public id is neither the cookie nor usable as one
    let cookie = chrome.cookie("flex_session").expect("a session cookie");
    assert!(!cookie.contains(&id) && !id.contains(&cookie), "{id} / {cookie}");
    let mut conn = app.pool.get().unwrap();
    let hashes: Vec<String> = sessions::table.select(sessions::id_hash).load(&mut *conn).unwrap();
    assert!(!hashes.contains(&id), "the public id is not the stored hash");
    let forger = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let forged =
        forger.get(format!("{}/account", app.base)).header("cookie", format!("flex_session={id}")).send().unwrap();
    assert_eq!(forged.status(), StatusCode::SEE_OTHER, "the public id signs nobody in");

    sessions_page(&firefox);
    firefox.post("/account/sessions/end", &[("session", &id)]).assert_redirect("/account/sessions");
    assert!(!signed_in(&chrome), "the ended session's cookie is dead");
    assert!(signed_in(&firefox), "this one lives on");
    let left = session_elements(&sessions_page(&firefox));
    assert_eq!(left.len(), 1);
    assert!(left[0].contains("This browser"));
}

fn a_foreign_or_unknown_id_ends_nothing(db: &TestDb) {
    let app = spawn(db, &[]);
    let (firefox, chrome) = two_browsers(&app);
    let bob = Browser::with_agent(&app, SAFARI);
    bob.sign_up(&[("username", "bob"), ("password", PASSWORD)]).assert_redirect("/account");
    let bobs = session_elements(&sessions_page(&bob));
    assert_eq!(bobs.len(), 1);
    // bob's own id is not in a form (it is his browser's); read it from the database
    let mut conn = app.pool.get().unwrap();
    let bob_id = user(&app, "bob").unwrap().id;
    let bobs_public: String = sessions::table
        .filter(sessions::user_id.eq(bob_id))
        .select(sessions::public_id.assume_not_null())
        .first(&mut *conn)
        .unwrap();
    let before: i64 = sessions::table.count().get_result(&mut *conn).unwrap();
    sessions_page(&firefox);
    for id in [bobs_public.as_str(), "no-such-session", "", &"x".repeat(5000)] {
        firefox.post("/account/sessions/end", &[("session", id)]).assert_redirect("/account/sessions");
    }
    firefox.post("/account/sessions/end", &[]).assert_redirect("/account/sessions");
    let after: i64 = sessions::table.count().get_result(&mut *conn).unwrap();
    assert_eq!(before, after, "nothing ended");
    assert!(signed_in(&bob) && signed_in(&chrome) && signed_in(&firefox));
    // and no event was recorded for a session that did not end
    let page = firefox.get("/account/activity");
    assert!(!page.body.contains("Ended a session"), "{}", page.body);
}

fn others_ends_every_other_session_and_not_this_one(db: &TestDb) {
    let app = spawn(db, &[]);
    let (firefox, chrome) = two_browsers(&app);
    let safari = Browser::with_agent(&app, SAFARI);
    safari.sign_in("alice", PASSWORD).assert_redirect("/account");
    let bob = Browser::new(&app);
    bob.sign_up(&[("username", "bob"), ("password", PASSWORD)]).assert_redirect("/account");
    assert_eq!(session_elements(&sessions_page(&chrome)).len(), 3);
    chrome.post("/account/sessions/end", &[("others", "on")]).assert_redirect("/account/sessions");
    assert!(signed_in(&chrome), "this session stays");
    assert!(!signed_in(&firefox) && !signed_in(&safari), "every other one ended");
    assert!(signed_in(&bob), "another user's sessions are not touched");
    let left = session_elements(&sessions_page(&chrome));
    assert_eq!(left.len(), 1);
    assert!(left[0].contains("Chrome on Android") && left[0].contains("This browser"));
    assert!(chrome.get("/account/activity").body.contains("Ended every other session"));
}

fn the_pages_need_a_signed_in_user(db: &TestDb) {
    let app = spawn(db, &[]);
    let visitor = Browser::new(&app);
    visitor.get("/account/sessions").assert_redirect("/sign-in?next=/account/sessions");
    visitor.get("/account/activity").assert_redirect("/sign-in?next=/account/activity");
    visitor.get("/sign-in");
    visitor.post("/account/sessions/end", &[("others", "on")]).assert_redirect("/sign-in?next=/account/sessions");
    // and the account page links to both
    let alice = alice(&app);
    let account = alice.get("/account");
    assert!(account.body.contains("href=\"/account/sessions\"") && account.body.contains("href=\"/account/activity\""));
}

/// The stored last use of each of alice's sessions.
fn last_seen(app: &TestApp) -> Vec<Option<NaiveDateTime>> {
    let id = user(app, "alice").unwrap().id;
    let mut conn = app.pool.get().unwrap();
    sessions::table.filter(sessions::user_id.eq(id)).select(sessions::last_seen_at).load(&mut *conn).unwrap()
}

fn last_used_is_written_at_most_once_a_minute(db: &TestDb) {
    let app = spawn(db, &[]);
    let started = app.accounts.now();
    let browser = Browser::with_agent(&app, FIREFOX);
    browser.sign_up(&[("username", "alice"), ("password", PASSWORD)]).assert_redirect("/account");
    let at = |secs: i64| flex_user::db::db_time(started + secs_(secs));
    assert_eq!(last_seen(&app), vec![Some(at(0))], "written when the session began");
    for step in 1..=59 {
        app.clock.advance(secs(1));
        assert!(signed_in(&browser));
        assert_eq!(last_seen(&app), vec![Some(at(0))], "no write {step} s later");
    }
    app.clock.advance(secs(1));
    assert!(signed_in(&browser));
    assert_eq!(last_seen(&app), vec![Some(at(60))], "written once a minute has passed");
    // many requests at once a minute later: one write, at that time
    app.clock.advance(secs(61));
    let copies: Vec<Browser> = (0..8).map(|_| browser.copy()).collect();
    let statuses = crate::common::at_once(8, |i| copies[i].get("/account").status);
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(last_seen(&app), vec![Some(at(121))]);
    // the page shows it
    let page = sessions_page(&browser);
    let shown = flex_user::web::views::When::at(started + secs_(121)).text;
    assert!(session_elements(&page)[0].contains(&shown), "{shown}: {}", page.body);
}

fn secs_(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

on_both_databases!(
    two_clients_are_listed_and_one_ends_the_other,
    a_foreign_or_unknown_id_ends_nothing,
    others_ends_every_other_session_and_not_this_one,
    the_pages_need_a_signed_in_user,
    last_used_is_written_at_most_once_a_minute,
);
