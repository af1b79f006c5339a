//! Races: N requests to the real server, released together by a barrier, on SQLite and
//! PostgreSQL. Each checks a promise that must hold however the requests interleave: a code is
//! spent once, the resend cooldown and the daily cap let exactly as many codes through as they
//! allow, and one email makes one account. (Sign-in throttling, reset proofs and the hourly SMS
//! limit under concurrency are tested beside their flows.)

#[path = "integration/common/mod.rs"]
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::TestDb;
use common::app::{Browser, Page, TestApp, spawn_app};
use common::at_once;
use common::flows::mail_code;
use common::log_capture::{LogBuffer, process_logs};
use diesel::prelude::*;
use flex_user::db::schema::{outbox, users};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";
/// Requests released together in each race.
const N: usize = 8;

on_both_databases!(
    one_code_checked_by_eight_requests_at_once_verifies_once,
    eight_sends_at_once_after_the_cooldown_send_one_code,
    eight_sign_ups_at_once_with_one_email_make_one_user,
    the_daily_cap_holds_under_concurrent_sends_and_resets,
);

// ---------------------------------------------------------------------------------------------
// helpers

fn spawn(db: &TestDb, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("FLEX_USER_IP_RATE_LIMIT", "0")];
    vars.extend_from_slice(extra);
    spawn_app(db, &vars)
}

/// `n` browsers, each signed in to the account on its own session (n devices at once).
fn sessions<'a>(app: &'a TestApp, identifier: &str, n: usize) -> Vec<Browser<'a>> {
    (0..n)
        .map(|_| {
            let browser = Browser::new(app);
            browser.sign_in(identifier, PASSWORD).assert_redirect("/account");
            browser
        })
        .collect()
}

/// The CSRF token of the form on `path`, for each browser (fetched before a race starts).
fn tokens(browsers: &[Browser], path: &str) -> Vec<String> {
    browsers
        .iter()
        .map(|b| {
            let page = b.get(path);
            assert_eq!(page.status, StatusCode::OK, "GET {path}: {}", page.body);
            page.csrf_token().expect("a form with a csrf_token")
        })
        .collect()
}

/// Code messages ever queued for `recipient` (notices, which carry no code, left out).
fn codes_queued(app: &TestApp, recipient: &str) -> i64 {
    let mut conn = app.pool.get().unwrap();
    outbox::table
        .filter(outbox::recipient.eq(recipient))
        .filter(outbox::token_id.is_not_null())
        .count()
        .get_result(&mut *conn)
        .unwrap()
}

/// Waits until `expected` emails reached `to`, then a little longer (the worker polls every
/// second), and returns how many arrived in all: a surplus shows up.
fn emails_settle(app: &TestApp, to: &str, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.emails_to(to) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    app.emails_to(to)
}

fn statuses(pages: &[Page]) -> Vec<u16> {
    pages.iter().map(|p| p.status.as_u16()).collect()
}

fn assert_no_server_error(pages: &[Page]) {
    for page in pages {
        assert!(!page.status.is_server_error(), "{}: {}", page.status, page.body);
    }
}

/// Every log line of this test binary, from the first call on. The log is the one place that
/// tells a success apart from a request that found the address already verified and did
/// nothing: both answer 303.
fn logs() -> &'static LogBuffer {
    process_logs("info")
}

// ---------------------------------------------------------------------------------------------
// the races

fn one_code_checked_by_eight_requests_at_once_verifies_once(db: &TestDb) {
    // The log is shared by the whole binary: the SQLite and PostgreSQL runs of this test (whose
    // users may both be id 1) take turns.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let logs = logs();

    let app = spawn(db, &[]);
    let email = "verify-race@example.org";
    Browser::new(&app).sign_up(&[("email", email), ("password", PASSWORD)]).assert_redirect("/account");
    let code = mail_code(&app.email_to(email, 0), 6).expect("a code in the sign-up email");
    let user_id =
        app.accounts.find_user(&flex_user::domain::Identifier::infer(email, None).unwrap()).unwrap().unwrap().id;

    let browsers = sessions(&app, email, N);
    let tokens = tokens(&browsers, "/verify/email");
    let start = logs.len();
    let pages = at_once(N, |i| browsers[i].post_raw("/verify/email", &[("csrf_token", &tokens[i]), ("code", &code)]));

    assert_no_server_error(&pages);
    for page in &pages {
        // the winner, and those that found the address verified already: 303 to /account;
        // those that lost the race for the code: 422, or 429 once a loser's failure counted
        match page.status {
            StatusCode::SEE_OTHER => assert_eq!(page.location(), Some("/account")),
            // a loser's failed check opens the backoff window; checks inside it wait
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}: {}", page.body),
        }
    }
    let verified_lines = logs
        .since(start)
        .lines()
        .filter(|l| l.contains("event=\"verified\"") && l.contains(&format!("user_id={user_id} ")))
        .count();
    assert_eq!(verified_lines, 1, "exactly one request verified with the code; statuses {:?}", statuses(&pages));
    let token = app.accounts.email_token(user_id).unwrap().unwrap();
    assert!(token.state.verified, "{token:?}");
}

fn eight_sends_at_once_after_the_cooldown_send_one_code(db: &TestDb) {
    let app = spawn(db, &[]);
    let email = "send-race@example.org";
    Browser::new(&app).sign_up(&[("email", email), ("password", PASSWORD)]).assert_redirect("/account");
    app.email_to(email, 0);
    let browsers = sessions(&app, email, N);
    let tokens = tokens(&browsers, "/verify/email");
    app.clock.advance(chrono::Duration::seconds(61));

    let pages = at_once(N, |i| browsers[i].post_raw("/verify/email/send", &[("csrf_token", &tokens[i])]));

    assert_no_server_error(&pages);
    let sent: Vec<&Page> = pages.iter().filter(|p| p.status == StatusCode::SEE_OTHER).collect();
    assert_eq!(sent.len(), 1, "one send passes the cooldown: {:?}", statuses(&pages));
    assert_eq!(sent[0].location(), Some("/verify/email"));
    for page in pages.iter().filter(|p| p.status != StatusCode::SEE_OTHER) {
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
        let wait: u64 = page.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&wait), "within the cooldown the new code started: {wait}");
    }
    assert_eq!(codes_queued(&app, email), 2, "the sign-up code and one more");
    assert_eq!(emails_settle(&app, email, 2), 2, "two emails delivered, no more");
}

fn eight_sign_ups_at_once_with_one_email_make_one_user(db: &TestDb) {
    let app = spawn(db, &[]);
    let browsers: Vec<Browser> = (0..N).map(|_| Browser::new(&app)).collect();
    let tokens = tokens(&browsers, "/sign-up");
    // one address in different letter cases, each with its own username and phone
    let spellings = ["race@example.org", "Race@Example.org", "RACE@example.org", "race@EXAMPLE.ORG"];
    let phone = |i: usize| format!("+1202555{}", 3000 + i);
    let pages = at_once(N, |i| {
        let (username, phone) = (format!("racer{i}"), phone(i));
        browsers[i].post_raw(
            "/sign-up",
            &[
                ("csrf_token", &tokens[i]),
                ("username", &username),
                ("email", spellings[i % spellings.len()]),
                ("phone", &phone),
                ("password", PASSWORD),
            ],
        )
    });

    assert_no_server_error(&pages);
    let winners: Vec<usize> = (0..N).filter(|&i| pages[i].status == StatusCode::SEE_OTHER).collect();
    assert_eq!(winners.len(), 1, "one account: {:?}", statuses(&pages));
    for (i, page) in pages.iter().enumerate().filter(|(i, _)| *i != winners[0]) {
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "sign-up {i}: {}", page.body);
        assert!(page.body.contains("A user with that email address already exists."), "sign-up {i}: {}", page.body);
    }
    let winner = winners[0];
    let mut conn = app.pool.get().unwrap();
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
        users::table.select((users::username, users::email, users::phone)).load(&mut *conn).unwrap();
    assert_eq!(rows.len(), 1, "nothing of the others was kept: {rows:?}");
    assert_eq!((rows[0].0.clone(), rows[0].2.clone()), (Some(format!("racer{winner}")), Some(phone(winner))));
    // as stored: the domain lower-cased, the local part as typed
    let stored_email = rows[0].1.clone().expect("the email");
    assert_eq!(stored_email.to_lowercase(), "race@example.org");
    drop(conn);
    // the refused sign-ups queued nothing (their transactions rolled back whole) …
    for i in (0..N).filter(|&i| i != winner) {
        assert_eq!(codes_queued(&app, &phone(i)), 0, "sign-up {i} left a message behind");
    }
    assert_eq!(codes_queued(&app, &phone(winner)), 1);
    assert_eq!(emails_settle(&app, &stored_email, 1), 1);
    // … and used up nothing: a refused phone signs up at once and gets its code
    let loser = (0..N).find(|&i| i != winner).unwrap();
    Browser::new(&app).sign_up(&[("phone", &phone(loser)), ("password", PASSWORD)]).assert_redirect("/account");
    assert_eq!(codes_queued(&app, &phone(loser)), 1, "no cooldown left by the refused attempt");
}

fn the_daily_cap_holds_under_concurrent_sends_and_resets(db: &TestDb) {
    const CAP: usize = 4;
    let app = spawn(db, &[("FLEX_USER_OTP_DAILY_LIMIT", "4"), ("FLEX_USER_OTP_RESEND_COOLDOWN", "0")]);
    let email = "cap-race@example.org";
    Browser::new(&app).sign_up(&[("email", email), ("password", PASSWORD)]).assert_redirect("/account");
    app.email_to(email, 0);

    // half resend from signed-in sessions, half ask for a reset: both spend the address's codes
    for round in 0..2 {
        let signed_in = sessions(&app, email, N / 2);
        let send_tokens = tokens(&signed_in, "/verify/email");
        let anonymous: Vec<Browser> = (0..N / 2).map(|_| Browser::new(&app)).collect();
        let reset_tokens = tokens(&anonymous, "/password-reset");
        let pages = at_once(N, |i| {
            if i < N / 2 {
                signed_in[i].post_raw("/verify/email/send", &[("csrf_token", &send_tokens[i])])
            } else {
                let j = i - N / 2;
                anonymous[j].post_raw("/password-reset", &[("csrf_token", &reset_tokens[j]), ("identifier", email)])
            }
        });

        assert_no_server_error(&pages);
        for page in &pages[..N / 2] {
            match page.status {
                StatusCode::SEE_OTHER => assert_eq!(page.location(), Some("/verify/email")),
                StatusCode::TOO_MANY_REQUESTS => assert!(page.header("retry-after").is_some()),
                other => panic!("round {round}: unexpected {other}: {}", page.body),
            }
        }
        for page in &pages[N / 2..] {
            // a reset answers alike whether or not a code went out
            page.assert_redirect("/password-reset/verify");
        }
        assert_eq!(codes_queued(&app, email) as usize, CAP, "round {round}: {:?}", statuses(&pages));
        if round == 1 {
            assert!(pages[..N / 2].iter().all(|p| p.status == StatusCode::TOO_MANY_REQUESTS), "past the cap");
        }
    }
    // A newer code replaces a pending one, so fewer may go out, never more than the cap. Every
    // row marked sent was delivered, and nothing was delivered that no worker claimed (a row
    // replaced while it was being sent is delivered and marked replaced).
    let delivered = emails_settle(&app, email, 1) as i64;
    assert!((1..=CAP as i64).contains(&delivered), "{delivered} emails delivered");
    let (sent, claimed) = rows_sent_and_claimed(&app, email);
    assert!(sent <= delivered && delivered <= claimed, "sent {sent}, delivered {delivered}, claimed {claimed}");
}

/// Rows for `recipient` marked sent, and rows some worker claimed for delivery.
fn rows_sent_and_claimed(app: &TestApp, recipient: &str) -> (i64, i64) {
    let mut conn = app.pool.get().unwrap();
    let rows: Vec<(String, i32)> = outbox::table
        .filter(outbox::recipient.eq(recipient))
        .select((outbox::status, outbox::attempts))
        .load(&mut *conn)
        .unwrap();
    let sent = rows.iter().filter(|(status, _)| status == "sent").count() as i64;
    let claimed = rows.iter().filter(|(_, attempts)| *attempts > 0).count() as i64;
    (sent, claimed)
}
