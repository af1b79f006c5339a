//! The activity log and the security notices (CONTRACT.md, "Sessions, activity, notices"),
//! over HTTP and through the library, on both databases.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use flex_user::accounts::activity::{self, Event, SignInMethod};
use flex_user::db::schema::{activity as activity_table, send_log, throttles};
use flex_user::delivery::notices::{Notice, Queued};
use flex_user::domain::{RequestContext, UserAgent};
use reqwest::StatusCode;

use crate::common::TestDb;
use crate::common::app::{Browser, TestApp, code_in};
use crate::common::flows::*;
use crate::sessions::{CHROME, FIREFOX, SAFARI, elements, session_elements};

type Row = (String, Option<String>, Option<String>, i32);

/// Alice's events, oldest first: (kind, detail, ip, count).
fn events(app: &TestApp) -> Vec<Row> {
    let id = user(app, "alice").or_else(|| user(app, ALICE_EMAIL)).unwrap().id;
    let mut conn = app.pool.get().unwrap();
    activity_table::table
        .filter(activity_table::user_id.eq(id))
        .order(activity_table::id)
        .select((activity_table::kind, activity_table::detail, activity_table::ip, activity_table::count))
        .load(&mut *conn)
        .unwrap()
}

fn kinds(app: &TestApp) -> Vec<String> {
    events(app)
        .into_iter()
        .map(|(kind, detail, _, _)| kind + detail.map(|d| format!(":{d}")).as_deref().unwrap_or(""))
        .collect()
}

fn all_activity_rows(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    activity_table::table.count().get_result(&mut *conn).unwrap()
}

/// Waits until every message queued for `to` has arrived, and returns the code of the newest
/// one that carries a code.
fn newest_code(app: &TestApp, to: &str) -> String {
    let (codes, notices) = queued(app, to);
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.emails_to(to) < codes + notices {
        assert!(Instant::now() < deadline, "not every message to {to} arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    (0..codes + notices)
        .rev()
        .find_map(|n| code_in(&plain_text(&app.email_to(to, n)), 6))
        .expect("a message with a code")
}

fn change_password(browser: &Browser, from: &str, to: &str) {
    browser.get("/account");
    browser.post("/account/password", &[("current_password", from), ("new_password", to)]).assert_redirect("/account");
}

/// Resets alice's password through her email; returns the browser that did it (signed out).
fn reset_by_email<'a>(app: &'a TestApp, new_password: &str) -> Browser<'a> {
    let browser = request_reset(app, ALICE_EMAIL);
    let code = newest_code(app, ALICE_EMAIL);
    browser.post("/password-reset/verify", &[("code", &code)]).assert_redirect("/password-reset/new");
    browser.get("/password-reset/new");
    browser.post("/password-reset/new", &[("new_password", new_password)]).assert_redirect("/sign-in");
    browser
}

fn each_event_is_recorded_once_with_its_ip(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    browser.post("/verify/email", &[("code", &mailed_code(&app, ALICE_EMAIL, 0))]).assert_redirect("/account");
    browser.get("/account");
    browser.post("/account", &[("phone", OTHER_PHONE), ("current_password", PASSWORD)]).assert_redirect("/account");
    browser.get("/account");
    browser.post("/account", &[("username", "")]).assert_redirect("/account");
    change_password(&browser, PASSWORD, NEW_PASSWORD);
    browser.post("/sign-out", &[]).assert_redirect("/");
    browser.sign_in(ALICE_EMAIL, NEW_PASSWORD).assert_redirect("/account");
    assert_status(&Browser::new(&app).sign_in(ALICE_EMAIL, "not her password"), StatusCode::UNAUTHORIZED);
    past_cooldown(&app); // for the reset's code
    reset_by_email(&app, PASSWORD);

    assert_eq!(
        kinds(&app),
        [
            "account_created",
            "identifier_verified:email",
            "identifier_changed:phone",
            "identifier_removed:username",
            "password_changed",
            "signed_out",
            "signed_in:password",
            "sign_in_failed",
            "password_reset",
        ]
    );
    for (kind, _, ip, count) in events(&app) {
        assert_eq!(ip.as_deref(), Some("127.0.0.1"), "{kind}");
        assert_eq!(count, 1, "{kind}");
    }

    // the page: newest first, each with time, IP and browser, and "this wasn't me"
    let reader = Browser::with_agent(&app, FIREFOX);
    reader.sign_in(ALICE_EMAIL, PASSWORD).assert_redirect("/account");
    let page = reader.get("/account/activity");
    assert_status(&page, StatusCode::OK);
    let shown = elements(&page.body, "<li class=\"card event");
    assert_eq!(shown.len(), 10, "{}", page.body);
    assert!(shown[0].contains("Signed in with a password") && shown[0].contains("Firefox on Linux"), "{}", shown[0]);
    assert!(shown[1].contains("Password reset"), "{}", shown[1]);
    assert!(shown[9].contains("Account created"), "{}", shown[9]);
    assert!(shown.iter().all(|e| e.contains("127.0.0.1") && e.contains("<time datetime=\"")));
    assert!(page.body.contains("href=\"/password-reset\">This wasn't me"), "{}", page.body);
}

fn a_failed_change_records_nothing(db: &TestDb) {
    let app = spawn(db, &[]);
    let bob = Browser::new(&app);
    bob.sign_up(&[("email", "bob@example.org"), ("password", PASSWORD)]).assert_redirect("/account");
    let browser = alice(&app);
    let wrong_current =
        browser.post("/account/password", &[("current_password", "nope"), ("new_password", NEW_PASSWORD)]);
    assert_status(&wrong_current, StatusCode::UNPROCESSABLE_ENTITY);
    browser.get("/account");
    let taken = browser.post("/account", &[("email", "bob@example.org"), ("current_password", PASSWORD)]);
    assert_status(&taken, StatusCode::UNPROCESSABLE_ENTITY);
    browser.get("/verify/email");
    let code = mailed_code(&app, ALICE_EMAIL, 0);
    assert_status(&browser.post("/verify/email", &[("code", &wrong(&code))]), StatusCode::UNPROCESSABLE_ENTITY);
    browser.get("/account");
    let unknown_end = browser.post("/account/sessions/end", &[("session", "whatever")]);
    unknown_end.assert_redirect("/account/sessions");
    assert_eq!(kinds(&app), ["account_created"]);
    assert_eq!(queued(&app, ALICE_EMAIL).1, 0, "and nobody was told anything");
}

fn failed_sign_ins_are_counted_per_hour(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let id = user(&app, "alice").unwrap().id;
    let guesser = Browser::new(&app);
    guesser.get("/sign-in");
    let clear_throttles = || {
        let mut conn = app.pool.get().unwrap();
        diesel::delete(throttles::table).execute(&mut *conn).unwrap();
    };
    for _ in 0..50 {
        clear_throttles(); // as if each guess came from a fresh window
        let page = guesser.post("/sign-in", &[("identifier", "alice"), ("password", "wrong guess")]);
        assert_status(&page, StatusCode::UNAUTHORIZED);
    }
    let failed: Vec<Row> = events(&app).into_iter().filter(|e| e.0 == "sign_in_failed").collect();
    assert_eq!(failed.len(), 1, "a flood of 50 makes one row: {failed:?}");
    assert_eq!(failed[0].3, 50);
    let page = browser.get("/account/activity");
    assert!(page.body.contains("50 failed sign-in attempts"), "{}", page.body);

    // unknown accounts record nothing
    let before = all_activity_rows(&app);
    for typed in ["nobody", "nobody@example.org", "+12025550000", "§§ not an identifier"] {
        clear_throttles();
        assert_status(&guesser.post("/sign-in", &[("identifier", typed), ("password", "x")]), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(all_activity_rows(&app), before);

    // the next hour has its own row; and concurrent failures are all counted
    app.clock.advance(chrono::Duration::hours(1));
    let ctx = RequestContext { ip: Some("192.0.2.1".parse().unwrap()), ..Default::default() };
    let now = app.accounts.now();
    crate::common::at_once(16, |_| {
        let mut conn = app.pool.get().unwrap();
        activity::record(&mut conn, id, Event::SignInFailed, &ctx, now).unwrap();
    });
    let failed: Vec<Row> = events(&app).into_iter().filter(|e| e.0 == "sign_in_failed").collect();
    assert_eq!(failed.iter().map(|e| e.3).collect::<Vec<_>>(), [50, 16], "{failed:?}");
    assert_eq!(failed[1].2.as_deref(), Some("192.0.2.1"));
}

fn notices_carry_no_code_and_reach_only_verified_addresses(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let notices = |to: &str| queued(&app, to).1;
    // nothing verified: nobody is told
    change_password(&browser, PASSWORD, NEW_PASSWORD);
    assert_eq!((notices(ALICE_EMAIL), notices(ALICE_PHONE)), (0, 0));

    // only the phone verified: by SMS
    browser.get("/verify/phone");
    browser.post("/verify/phone", &[("code", &texted_code(&app, ALICE_PHONE, 0))]).assert_redirect("/account");
    change_password(&browser, NEW_PASSWORD, PASSWORD);
    assert_eq!((notices(ALICE_EMAIL), notices(ALICE_PHONE)), (0, 1));
    let sms = app.sms_to(ALICE_PHONE, 1);
    assert!(sms.contains("password") && sms.contains("changed"), "{sms}");
    assert!(sms.contains("127.0.0.1") && sms.contains("http://auth.test:8080/password-reset"), "{sms}");
    assert!(!digit_runs(&sms).iter().any(|r| r.len() >= 6), "no run of six digits: {sms}");

    // the email verified too: by email only
    browser.get("/verify/email");
    browser.post("/verify/email", &[("code", &mailed_code(&app, ALICE_EMAIL, 0))]).assert_redirect("/account");
    change_password(&browser, PASSWORD, NEW_PASSWORD);
    assert_eq!((notices(ALICE_EMAIL), notices(ALICE_PHONE)), (1, 1));
    let raw = app.email_to(ALICE_EMAIL, 1);
    let text = plain_text(&raw);
    assert!(text.contains("password") && text.contains("was changed"), "{text}");
    assert!(text.contains("IP address: 127.0.0.1") && text.contains("Browser: Unknown browser"), "{text}");
    assert!(text.contains("http://auth.test:8080/password-reset"), "{text}");
    assert!(code_in(&text, 6).is_none() && !digit_runs(&text).iter().any(|r| r.len() >= 6), "{text}");
    assert!(raw.contains("text/html"), "with an HTML part too");

    // a reset is told as well, after it completed
    past_cooldown(&app);
    reset_by_email(&app, PASSWORD);
    assert_eq!((notices(ALICE_EMAIL), notices(ALICE_PHONE)), (2, 1));
    let (codes, _) = queued(&app, ALICE_EMAIL);
    let reset_notice = plain_text(&app.email_to(ALICE_EMAIL, codes + 1));
    assert!(reset_notice.contains("was reset"), "{reset_notice}");
    assert!(!digit_runs(&reset_notice).iter().any(|r| r.len() >= 6), "{reset_notice}");
}

/// Alice signed up from Firefox with her email verified.
fn alice_with_verified_email(app: &TestApp) -> Browser<'_> {
    let browser = Browser::with_agent(app, FIREFOX);
    browser
        .sign_up(&[("username", "alice"), ("email", ALICE_EMAIL), ("password", PASSWORD)])
        .assert_redirect("/account");
    browser.get("/verify/email");
    browser.post("/verify/email", &[("code", &mailed_code(app, ALICE_EMAIL, 0))]).assert_redirect("/account");
    browser
}

fn a_new_browser_is_told_once(db: &TestDb) {
    let app = spawn(db, &[]);
    let notices = || queued(&app, ALICE_EMAIL).1;
    let first = alice_with_verified_email(&app);
    // the browser that signed up is known, also after signing out
    first.post("/sign-out", &[]).assert_redirect("/");
    first.sign_in("alice", PASSWORD).assert_redirect("/account");
    assert_eq!(notices(), 0);

    let second = Browser::with_agent(&app, CHROME);
    second.sign_in("alice", PASSWORD).assert_redirect("/account");
    assert_eq!(notices(), 1, "a new browser: one notice");
    let text = plain_text(&app.email_to(ALICE_EMAIL, 1));
    assert!(text.contains("from a browser that had not signed in to it before"), "{text}");
    assert!(text.contains("Chrome on Android") && text.contains("127.0.0.1"), "{text}");
    assert!(text.contains("http://auth.test:8080/password-reset"), "{text}");
    assert!(!digit_runs(&text).iter().any(|r| r.len() >= 6), "{text}");

    second.get("/account");
    second.post("/sign-out", &[]).assert_redirect("/");
    assert!(second.cookie("flex_browser").is_some(), "the browser cookie outlives sign-out");
    second.sign_in("alice", PASSWORD).assert_redirect("/account");
    assert_eq!(notices(), 1, "the same browser again: none");

    Browser::with_agent(&app, SAFARI).sign_in("alice", PASSWORD).assert_redirect("/account");
    assert_eq!(notices(), 2, "a different browser: one");

    // a browser cookie that was not made here counts as a new browser
    let forger = Browser::with_agent(&app, SAFARI);
    let url: reqwest::Url = app.base.parse().unwrap();
    let stolen = second.cookie("flex_browser").unwrap();
    let (id, _) = stolen.split_once('.').unwrap();
    forger.jar.add_cookie_str(&format!("flex_browser={id}.0000"), &url);
    forger.sign_in("alice", PASSWORD).assert_redirect("/account");
    assert_eq!(notices(), 3);
    assert_ne!(forger.cookie("flex_browser"), Some(format!("{id}.0000")), "it gets a browser id of its own");
}

fn the_new_browser_notice_is_bounded(db: &TestDb) {
    let app = spawn(db, &[]);
    let notices = || queued(&app, ALICE_EMAIL).1;
    let browser = alice_with_verified_email(&app);
    let send_log_rows = || -> i64 {
        let mut conn = app.pool.get().unwrap();
        send_log::table.count().get_result(&mut *conn).unwrap()
    };
    let codes_sent = send_log_rows();
    for _ in 0..6 {
        Browser::new(&app).sign_in("alice", PASSWORD).assert_redirect("/account");
    }
    assert_eq!(notices(), flex_user::delivery::notices::NEW_BROWSER_PER_HOUR as usize, "at most 3 an hour");
    // other notices have a bound of their own, and notices use none of the code limits
    change_password(&browser, PASSWORD, NEW_PASSWORD);
    assert_eq!(notices(), 4);
    assert_eq!(send_log_rows(), codes_sent, "notices count against no code limit");
    // inside the resend cooldown of a fresh code, a notice still goes
    past_cooldown(&app);
    request_reset(&app, ALICE_EMAIL);
    let codes_sent = send_log_rows();
    assert_eq!(queued(&app, ALICE_EMAIL).0, 2, "the reset's code went");
    change_password(&browser, NEW_PASSWORD, PASSWORD);
    assert_eq!(notices(), 5);
    assert_eq!(send_log_rows(), codes_sent);

    app.clock.advance(chrono::Duration::minutes(61));
    Browser::new(&app).sign_in("alice", PASSWORD).assert_redirect("/account");
    assert_eq!(notices(), 6, "a new hour, a new notice");
}

fn one_browser_signing_in_at_once_is_told_once(db: &TestDb) {
    let app = spawn(db, &[]);
    alice_with_verified_email(&app);
    let id = user(&app, "alice").unwrap().id;
    let ctx = RequestContext {
        ip: Some("198.51.100.4".parse().unwrap()),
        user_agent: UserAgent::parse(CHROME),
        browser: Some("b".repeat(64)),
    };
    let results = crate::common::at_once(8, |_| app.flows.signed_in(id, SignInMethod::Password, &ctx).is_ok());
    assert!(results.iter().all(|ok| *ok));
    assert_eq!(queued(&app, ALICE_EMAIL).1, 1, "one notice for one new browser");
    let signed_in = kinds(&app).iter().filter(|k| *k == "signed_in:password").count();
    assert_eq!(signed_in, 8, "each sign-in recorded");
    // API clients (no browser id) are never told
    let api = RequestContext { browser: None, ..ctx };
    app.flows.signed_in(id, SignInMethod::Password, &api).unwrap();
    assert_eq!(queued(&app, ALICE_EMAIL).1, 1);
}

fn new_browser_notices_stay_bounded_under_concurrency(db: &TestDb) {
    let app = spawn(db, &[]);
    alice_with_verified_email(&app);
    let id = user(&app, "alice").unwrap().id;
    let contexts: Vec<RequestContext> = (0..12)
        .map(|i| RequestContext {
            ip: Some("198.51.100.4".parse().unwrap()),
            user_agent: None,
            browser: Some(format!("{i:064}")),
        })
        .collect();
    let results = crate::common::at_once(12, |i| app.flows.signed_in(id, SignInMethod::Password, &contexts[i]).is_ok());
    assert!(results.iter().all(|ok| *ok));
    let bound = flex_user::delivery::notices::NEW_BROWSER_PER_HOUR as usize;
    assert_eq!(queued(&app, ALICE_EMAIL).1, bound, "twelve new browsers at once: still at most {bound} notices");

    // the bound's own check-then-act, without the sign-in's other writes around it
    app.clock.advance(chrono::Duration::hours(2));
    let (now, site) = (app.accounts.now(), reqwest::Url::parse("http://auth.test:8080").unwrap());
    let queued_now = crate::common::at_once(12, |i| {
        let mut conn = app.pool.get().unwrap();
        flex_user::db::write_transaction(&mut conn, |conn| {
            flex_user::delivery::notices::queue(conn, id, Notice::NewBrowserSignIn, &contexts[i], &site, now)
        })
        .unwrap()
    });
    let sent = queued_now.iter().filter(|q| matches!(q, Queued::To(_))).count();
    assert_eq!(sent, bound, "{queued_now:?}");
    assert_eq!(queued(&app, ALICE_EMAIL).1, 2 * bound);
}

fn the_activity_page_goes_back_page_by_page(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice(&app);
    let id = user(&app, "alice").unwrap().id;
    let mut conn = app.pool.get().unwrap();
    let start = app.accounts.now() - chrono::Duration::days(80);
    for i in 0..249 {
        let ctx = RequestContext { ip: Some("192.0.2.9".parse().unwrap()), ..Default::default() };
        activity::record(&mut conn, id, Event::SignedOut, &ctx, start + chrono::Duration::minutes(i)).unwrap();
    }
    // 250 with the sign-up: pages of 100, 100 and 50
    let events_on = |path: &str| {
        let page = browser.get(path);
        assert_status(&page, StatusCode::OK);
        (elements(&page.body, "<li class=\"card event").len(), page.body)
    };
    let (shown, first) = events_on("/account/activity");
    assert_eq!(shown, 100);
    assert!(first.contains("href=\"/account/activity?page=2\"") && !first.contains("Newer events"), "{first}");
    assert!(first.contains("Account created"), "the newest first");
    let (shown, second) = events_on("/account/activity?page=2");
    assert_eq!(shown, 100);
    assert!(second.contains("href=\"/account/activity\" rel=\"prev\"") && second.contains("?page=3"), "{second}");
    let (shown, third) = events_on("/account/activity?page=3");
    assert_eq!(shown, 50, "the oldest, 80 days back, are still there");
    assert!(!third.contains("Older events"), "{third}");
    for junk in ["0", "-1", "x", "99999999999999999999", "1001"] {
        assert_eq!(events_on(&format!("/account/activity?page={junk}")).0, 100, "{junk}: page 1");
    }
}

fn pruning_keeps_ninety_days(db: &TestDb) {
    let app = spawn(db, &[("FLEX_USER_ACTIVITY_DAYS", "90")]);
    let start = app.accounts.now();
    let browser = alice(&app);
    let id = user(&app, "alice").unwrap().id;
    app.clock.advance(chrono::Duration::days(60));
    app.flows.sign_out(id, None, &RequestContext::default()).unwrap();
    app.clock.set(start + chrono::Duration::days(90) - chrono::Duration::seconds(1));
    app.flows.housekeeping().unwrap();
    assert_eq!(kinds(&app), ["account_created", "signed_out"], "90 days are kept");
    app.clock.set(start + chrono::Duration::days(90) + chrono::Duration::seconds(1));
    app.flows.housekeeping().unwrap();
    assert_eq!(kinds(&app), ["signed_out"], "older ones go");
    drop(browser);

    // a pass is bounded
    let mut conn = app.pool.get().unwrap();
    let old = start - chrono::Duration::days(400);
    for _ in 0..1500 {
        activity::record(&mut conn, id, Event::SignedOut, &RequestContext::default(), old).unwrap();
    }
    let before = app.accounts.now() - chrono::Duration::days(90);
    assert_eq!(activity::prune(&mut conn, before, 1000).unwrap(), 1000);
    assert_eq!(activity::prune(&mut conn, before, 1000).unwrap(), 500);
    assert_eq!(activity::prune(&mut conn, before, 1000).unwrap(), 0);
    assert_eq!(kinds(&app), ["signed_out"]);
}

on_both_databases!(
    each_event_is_recorded_once_with_its_ip,
    a_failed_change_records_nothing,
    failed_sign_ins_are_counted_per_hour,
    notices_carry_no_code_and_reach_only_verified_addresses,
    a_new_browser_is_told_once,
    the_new_browser_notice_is_bounded,
    one_browser_signing_in_at_once_is_told_once,
    new_browser_notices_stay_bounded_under_concurrency,
    the_activity_page_goes_back_page_by_page,
    pruning_keeps_ninety_days,
    second_factor_changes_are_recorded_and_told,
    a_two_step_sign_in_is_recorded_after_its_second_step,
    api_tokens_show_where_they_were_used,
);

/// The plain text of every email to `to`, once every message queued for it has arrived.
fn mail_texts(app: &TestApp, to: &str) -> Vec<String> {
    let (codes, notices) = queued(app, to);
    (0..codes + notices).map(|n| plain_text(&app.email_to(to, n))).collect()
}

/// Alice's events from the first one of `kind` on.
fn kinds_from(app: &TestApp, kind: &str) -> Vec<String> {
    kinds(app).into_iter().skip_while(|k| !k.starts_with(kind)).collect()
}

fn second_factor_changes_are_recorded_and_told(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice_with_verified_email(&app);
    crate::two_factor::enable_totp(&app, &browser);
    browser.get("/account/two-factor");
    browser
        .post("/account/two-factor/recovery-codes", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor/recovery-codes");
    browser.get("/account/two-factor");
    browser
        .post("/account/two-factor/totp/disable", &[("current_password", PASSWORD)])
        .assert_redirect("/account/two-factor");
    // a refused change records and tells nothing
    browser.get("/account/two-factor");
    let page = browser.post("/account/two-factor/totp/setup", &[("current_password", "not it")]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        kinds_from(&app, "second_factor"),
        ["second_factor_added:totp", "recovery_codes_made", "second_factor_removed:totp"]
    );
    assert!(events(&app).iter().all(|(_, _, ip, _)| ip.as_deref() == Some("127.0.0.1")));
    let page = browser.get("/account/activity");
    for shown in ["Added a second factor", "Made new recovery codes", "Removed a second factor"] {
        assert!(page.body.contains(shown), "{shown} in {}", page.body);
    }

    // told: the factor added and removed (new recovery codes are no notice)
    assert_eq!(queued(&app, ALICE_EMAIL).1, 2);
    let texts = mail_texts(&app, ALICE_EMAIL);
    let told =
        |needle: &str| texts.iter().find(|t| t.contains(needle)).unwrap_or_else(|| panic!("{needle}: {texts:?}"));
    for needle in [
        "An authenticator app was added as a second factor",
        "An authenticator app was removed from the second factors",
    ] {
        let text = told(needle);
        assert!(text.contains("IP address: 127.0.0.1") && text.contains("Firefox"), "{text}");
        assert!(!digit_runs(text).iter().any(|r| r.len() >= 6), "no run of six digits: {text}");
    }
}

fn a_two_step_sign_in_is_recorded_after_its_second_step(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice_with_verified_email(&app);
    let (secret, codes) = crate::two_factor::enable_totp(&app, &browser);
    let notices = || queued(&app, ALICE_EMAIL).1;
    let before = notices();

    // the password alone, from a new browser: not signed in, nothing recorded, nobody told
    let chrome = Browser::with_agent(&app, CHROME);
    chrome.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");
    chrome.get("/sign-in/two-factor");
    assert_eq!(kinds_from(&app, "signed_in"), Vec::<String>::new());
    assert_eq!(notices(), before, "no new-browser notice before the second step");

    // the second step: a sign-in with a password, and the new browser told of
    let code = secret.code_at(now_of(&app));
    chrome.post("/sign-in/two-factor", &[("code", &code)]).assert_redirect("/account");
    assert_eq!(kinds_from(&app, "signed_in"), ["signed_in:password"]);
    assert_eq!(notices(), before + 1);
    assert!(mail_texts(&app, ALICE_EMAIL).iter().any(|t| t.contains("had not signed in to it before")));

    // a recovery code: recorded as such, and told how many are left
    let safari = Browser::with_agent(&app, SAFARI);
    safari.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");
    safari.get("/sign-in/two-factor");
    safari.post("/sign-in/two-factor", &[("code", &codes[0])]).assert_redirect("/account");
    assert_eq!(kinds_from(&app, "signed_in"), ["signed_in:password", "signed_in:recovery_code"]);
    let texts = mail_texts(&app, ALICE_EMAIL);
    let used = texts.iter().find(|t| t.contains("A recovery code was used")).expect("the recovery-code notice");
    assert!(used.contains("You have 9 recovery codes left."), "{used}");
    assert!(!digit_runs(used).iter().any(|r| r.len() >= 6), "{used}");
    let page = safari.get("/account/activity");
    assert!(page.body.contains("Signed in with a recovery code"), "{}", page.body);

    // a wrong code records no sign-in
    let third = Browser::with_agent(&app, CHROME);
    third.sign_in("alice", PASSWORD).assert_redirect("/sign-in/two-factor");
    third.get("/sign-in/two-factor");
    assert_eq!(third.post("/sign-in/two-factor", &[("code", "000000")]).status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kinds(&app).iter().filter(|k| k.starts_with("signed_in:")).count(), 2);
    // but is a failed sign-in the owner sees: someone had the password
    assert_eq!(kinds(&app).last().map(String::as_str), Some("sign_in_failed"));
    let page = browser.get("/account/activity");
    assert!(page.body.contains("1 failed sign-in attempt"), "{}", page.body);
}

/// An API token shows on the sessions page where it was made and last used from.
fn api_tokens_show_where_they_were_used(db: &TestDb) {
    let app = spawn(db, &[]);
    let browser = alice_with_verified_email(&app);
    let http = reqwest::blocking::Client::new();
    let answer: serde_json::Value = http
        .post(format!("{}/api/v1/sign-in", app.base))
        .header("User-Agent", SAFARI)
        .json(&serde_json::json!({"identifier": "alice", "password": PASSWORD}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = answer["token"].as_str().expect("a token").to_owned();
    assert_eq!(kinds_from(&app, "signed_in"), ["signed_in:password"], "the API's sign-in is recorded too");
    let page = browser.get("/account/sessions");
    let sessions = session_elements(&page);
    assert_eq!(sessions.len(), 2, "{}", page.body);
    let api = sessions.iter().find(|s| s.contains("Safari")).unwrap_or_else(|| panic!("{sessions:?}"));
    assert!(api.contains("127.0.0.1"), "{api}");

    // a later use from another client, past the minute, is what the page shows
    app.clock.advance(secs(120));
    let me =
        http.get(format!("{}/api/v1/me", app.base)).bearer_auth(&token).header("User-Agent", CHROME).send().unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let page = browser.get("/account/sessions");
    let sessions = session_elements(&page);
    assert!(
        sessions.iter().any(|s| s.contains("Chrome")) && !sessions.iter().any(|s| s.contains("Safari")),
        "{sessions:?}"
    );
}

fn now_of(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    use flex_user::clock::Clock as _;
    app.clock.now()
}
