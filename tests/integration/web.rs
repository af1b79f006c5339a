//! The site over HTTP, as a browser drives it: sign-up, sign-in, sign-out, sessions, CSRF and
//! the hardening promises of the contract. On SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use crate::common::TestDb;
use crate::common::app::{Browser, TestApp, code_in, spawn_app};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

on_both_databases!(
    home_shows_who_is_signed_in,
    sign_up_signs_in_with_a_new_session_and_sends_codes,
    sign_up_reshows_the_form_with_messages,
    twenty_parallel_sign_ups_of_one_email,
    sign_in_with_each_identifier_and_next,
    sign_in_failures_look_the_same_and_are_throttled,
    sign_out_ends_the_session_for_copied_cookies,
    a_users_live_sessions_are_listed_and_end_with_sign_out,
    csrf_is_required_and_bound,
    hardening_headers_sizes_and_errors,
    ip_limit_comes_before_csrf,
    anonymous_pages_write_no_sessions,
    signed_out_visitors_are_sent_to_sign_in,
    a_dead_smtp_server_delays_nothing,
    a_failure_inside_shows_a_500_page_without_internals,
    cookies_are_secure_behind_https,
    sessions_end_when_idle_and_at_their_absolute_age,
    a_short_idle_timeout_slides_with_every_use,
    stale_throttle_rows_and_sessions_are_cleaned_up,
    two_instances_share_nothing_but_the_database_and_the_secret,
);

fn alice(app: &TestApp) -> Browser<'_> {
    let browser = Browser::new(app);
    browser
        .sign_up(&[
            ("username", "alice"),
            ("email", "alice@example.org"),
            ("phone", "+12025551234"),
            ("password", PASSWORD),
        ])
        .assert_redirect("/account");
    browser.get("/account"); // where the sign-up sent her
    browser
}

fn home_shows_who_is_signed_in(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let anonymous = Browser::new(&app);
    let page = anonymous.get("/");
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("action=\"/sign-out\""));
    let browser = Browser::new(&app);
    browser.sign_up(&[("email", "bob@example.org"), ("password", PASSWORD)]).assert_redirect("/account");
    let page = browser.get("/");
    assert!(page.body.contains("bob@example.org"), "display name: email when no username");
    assert!(page.body.contains("action=\"/sign-out\""), "a sign-out button when signed in");
}

fn sign_up_signs_in_with_a_new_session_and_sends_codes(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let browser = Browser::new(&app);
    browser.get("/sign-up");
    let before = browser.cookie("flex_session");
    let page = browser.sign_up(&[
        ("username", "alice"),
        ("email", "alice@example.org"),
        ("phone", "+1 202 555 1234"),
        ("password", PASSWORD),
    ]);
    page.assert_redirect("/account");
    let after = browser.cookie("flex_session").expect("a session cookie");
    assert_ne!(before, Some(after));
    let cookie = page.set_cookies().into_iter().find(|c| c.starts_with("flex_session=")).unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && !cookie.contains("Secure"), "{cookie}");

    let account = browser.get("/account");
    assert_eq!(account.status, StatusCode::OK);
    assert!(account.body.contains("alice@example.org") && account.body.contains("+12025551234"));

    // a code to the email and one to the phone, through the real listeners
    let mail = app.email_to("alice@example.org", 0);
    assert!(code_in(&mail, 6).is_some(), "{mail}");
    let sms = app.sms_to("+12025551234", 0);
    let code = code_in(&sms, 6).unwrap();
    assert!(sms.trim_end().ends_with(&format!("@auth.test #{code}")), "WebOTP line: {sms:?}");
}

fn sign_up_reshows_the_form_with_messages(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let browser = Browser::new(&app);
    let form = browser.get("/sign-up");
    assert!(!form.body.contains("name=\"username\" required") && form.body.contains("autocomplete=\"new-password\""));

    let page = browser.sign_up(&[
        ("username", ".bad"),
        ("email", "not-an-email"),
        ("phone", ""),
        ("password", "secret-typed-here-1"),
    ]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("value=\".bad\"") && page.body.contains("value=\"not-an-email\""), "typed values kept");
    assert!(!page.body.contains("secret-typed-here-1"), "never a password");
    assert!(page.body.contains("Enter a valid email address."));

    let page = browser.sign_up(&[("password", PASSWORD)]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "no identifier at all");
    assert!(
        page.body.contains("Give at least one of a username, an email address or a phone number."),
        "{}",
        page.body
    );
    let page = browser.sign_up(&[("username", "carol"), ("password", "12345678")]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("entirely numeric"));
    let page = browser.sign_up(&[("username", "carol"), ("password", "carol123")]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "too similar / too common");
    assert!(page.body.contains("The password is too similar to the username."), "{}", page.body);
    assert!(page.body.contains("This password is too common."), "{}", page.body);

    alice(&app);
    let page = Browser::new(&app).sign_up(&[("email", "ALICE@example.org"), ("password", PASSWORD)]);
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("A user with that email address already exists."));
    // nothing was created by the refusals
    assert!(app.accounts.authenticate("carol", "carol123").unwrap().is_none());
}

fn twenty_parallel_sign_ups_of_one_email(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let browsers: Vec<Browser> = (0..20).map(|_| Browser::new(&app)).collect();
    let tokens: Vec<String> = browsers.iter().map(|b| b.get("/sign-up").csrf_token().unwrap()).collect();
    let barrier = std::sync::Barrier::new(20);
    let statuses: Vec<StatusCode> = std::thread::scope(|s| {
        let handles: Vec<_> = browsers
            .iter()
            .zip(&tokens)
            .map(|(b, t)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    b.post_raw("/sign-up", &[("csrf_token", t), ("email", "race@example.org"), ("password", PASSWORD)])
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = statuses.iter().filter(|s| **s == StatusCode::SEE_OTHER).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count();
    assert_eq!((created, refused), (1, 19), "{statuses:?}");
}

fn sign_in_with_each_identifier_and_next(db: &TestDb) {
    let app = spawn_app(db, &[]);
    alice(&app).post("/sign-out", &[]).assert_redirect("/");
    for identifier in ["alice", "ALICE", "Alice@Example.org", "+1 (202) 555-1234"] {
        let browser = Browser::new(&app);
        browser.get("/");
        let page = browser.sign_in(identifier, PASSWORD);
        page.assert_redirect("/account");
        assert!(browser.get("/").body.contains("alice"), "{identifier}");
    }
    let browser = Browser::new(&app);
    let form = browser.get("/sign-in?next=/verify/email");
    assert!(form.body.contains("href=\"/password-reset\"") && form.body.contains("href=\"/sign-up\""));
    let page = browser.post("/sign-in", &[("identifier", "alice"), ("password", PASSWORD), ("next", "/verify/email")]);
    page.assert_redirect("/verify/email");
    for evil in ["//evil.example/x", "https://evil.example", "/\\evil.example", "account"] {
        let browser = Browser::new(&app);
        browser.get("/sign-in");
        let page = browser.post("/sign-in", &[("identifier", "alice"), ("password", PASSWORD), ("next", evil)]);
        page.assert_redirect("/account");
    }
    // the session id changes at sign-in
    let browser = Browser::new(&app);
    browser.get("/password-reset");
    browser.post("/password-reset", &[("identifier", "nobody@example.org")]);
    let before = browser.cookie("flex_session").expect("a session for the reset request");
    browser.sign_in("alice", PASSWORD).assert_redirect("/account");
    assert_ne!(browser.cookie("flex_session").unwrap(), before);
}

fn sign_in_failures_look_the_same_and_are_throttled(db: &TestDb) {
    let app = spawn_app(db, &[]);
    alice(&app);
    let browser = Browser::new(&app);
    let wrong = browser.sign_in("alice", "wrong password");
    let unknown = browser.sign_in("nobody", "wrong password");
    let garbage = browser.sign_in("-not an identifier-", "x");
    for page in [&wrong, &unknown, &garbage] {
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let message = |body: &str| body.contains("do not match an account");
    assert!(message(&wrong.body) && message(&unknown.body) && message(&garbage.body));
    assert!(wrong.body.contains("value=\"alice\"") && !wrong.body.contains("wrong password"));

    // the first failure opened a 1 s window for each identifier, known or not
    for identifier in ["alice", "nobody", "-not an identifier-"] {
        let page = browser.sign_in(identifier, PASSWORD);
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{identifier}");
        assert_eq!(page.header("retry-after"), Some("1"));
        assert!(page.body.contains("Try again in 1 second"));
    }
    // keyed on the normalized identifier: the same account by its email is another key
    app.clock.advance(chrono::Duration::seconds(1));
    let page = browser.sign_in("ALICE", "wrong again");
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "past the window, checked and refused: {}", page.body);
    assert!(message(&page.body), "{}", page.body);
    let page = browser.sign_in("alice", PASSWORD);
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "ALICE and alice are one key");
    assert_eq!(page.header("retry-after"), Some("2"));
    app.clock.advance(chrono::Duration::seconds(2));
    browser.sign_in("alice", PASSWORD).assert_redirect("/account");
}

fn sign_out_ends_the_session_for_copied_cookies(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let browser = alice(&app);
    let thief = browser.copy();
    assert_eq!(thief.get("/account").status, StatusCode::OK, "the copy works while signed in");
    browser.post("/sign-out", &[]).assert_redirect("/");
    assert_eq!(browser.get("/account").location(), Some("/sign-in?next=/account"));
    let page = thief.get("/account");
    assert_eq!(page.status, StatusCode::SEE_OTHER, "a copied cookie stops working after sign-out");
}

/// The sessions table's listing for a user (the data access the sessions page will show).
fn a_users_live_sessions_are_listed_and_end_with_sign_out(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let first = alice(&app);
    let id = app.accounts.find_user(&flex_user::domain::Identifier::infer("alice", None).unwrap()).unwrap().unwrap().id;
    let second = Browser::new(&app);
    second.sign_in("alice", PASSWORD).assert_redirect("/account");
    let live = |app: &TestApp| {
        let mut conn = app.pool.get().unwrap();
        flex_user::accounts::sessions::sessions_of(&mut conn, id, app.accounts.now()).unwrap()
    };
    let sessions = live(&app);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(sessions[0].created_at >= sessions[1].created_at, "newest first");
    assert!(sessions.iter().all(|s| s.expires_at > app.accounts.now()));
    first.post("/sign-out", &[]).assert_redirect("/");
    assert_eq!(live(&app).len(), 1);
    // past the idle timeout nothing is live
    app.clock.advance(chrono::Duration::days(2));
    assert!(live(&app).is_empty());
}

fn csrf_is_required_and_bound(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let browser = Browser::new(&app);
    browser.get("/sign-up");
    let fields = [("email", "csrf@example.org"), ("password", PASSWORD)];
    assert_eq!(browser.post_raw("/sign-up", &fields).status, StatusCode::FORBIDDEN);
    let mut wrong = vec![("csrf_token", "0000")];
    wrong.extend_from_slice(&fields);
    let page = browser.post_raw("/sign-up", &wrong);
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(app.accounts.authenticate("csrf@example.org", PASSWORD).unwrap().is_none(), "nothing changed");

    // a token from another visitor does not work here
    let other = Browser::new(&app);
    let token = other.get("/sign-in").csrf_token().unwrap();
    let mut theirs = vec![("csrf_token", token.as_str())];
    theirs.extend_from_slice(&fields);
    assert_eq!(browser.post_raw("/sign-up", &theirs).status, StatusCode::FORBIDDEN);

    // a signed-in session refuses a CSRF cookie planted from elsewhere
    let signed_in = alice(&app);
    let planted = Browser::new(&app);
    let planted_token = planted.get("/sign-in").csrf_token().unwrap();
    let planted_cookie = planted.cookie("flex_csrf").unwrap();
    let url = app.base.parse().unwrap();
    signed_in.jar.add_cookie_str(&format!("flex_csrf={planted_cookie}; Path=/"), &url);
    let page = signed_in.post_raw("/sign-out", &[("csrf_token", &planted_token)]);
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

fn hardening_headers_sizes_and_errors(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let browser = Browser::new(&app);
    let big = "x".repeat(70 * 1024);
    let pages = [
        browser.get("/"),
        browser.get("/sign-in"),
        browser.get("/no/such/page"),
        browser.post_raw("/sign-in", &[("identifier", &big)]),
        browser.post_raw("/sign-in", &[]),
    ];
    assert_eq!(pages[2].status, StatusCode::NOT_FOUND);
    assert_eq!(pages[3].status, StatusCode::PAYLOAD_TOO_LARGE, "413 before CSRF");
    assert_eq!(pages[4].status, StatusCode::FORBIDDEN);
    for page in &pages {
        let csp = page.header("content-security-policy").expect("CSP");
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert!(page.header("referrer-policy").is_some());
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert!(page.header("content-type").unwrap().starts_with("text/html"));
        assert!(page.body.contains("name=\"viewport\""));
    }
    assert!(pages[2].body.contains("Page not found"));
    let health = browser.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (StatusCode::OK, "ok"));
    let head = reqwest::blocking::Client::new().head(format!("{}/healthz", app.base)).send().unwrap();
    assert_eq!(head.status(), StatusCode::OK, "load balancers may probe with HEAD");
    let css = browser.get("/static/style.css");
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}

fn ip_limit_comes_before_csrf(db: &TestDb) {
    let app = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "3")]);
    let browser = Browser::new(&app);
    browser.get("/");
    for _ in 0..3 {
        assert_eq!(browser.post_raw("/sign-in", &[]).status, StatusCode::FORBIDDEN);
    }
    let page = browser.post_raw("/sign-in", &[]);
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = page.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "refilled evenly: one request every 20 s, got {wait}");
    assert!(page.body.contains("Try again in"));
    assert_eq!(browser.get("/sign-in").status, StatusCode::OK, "GETs are not limited");

    // a signed-in visitor's 429 page keeps the sign-out button
    let app = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "2")]);
    // the bucket lives in the database, shared with the instance above: let it fill up again
    app.clock.advance(chrono::Duration::minutes(2));
    let browser = alice(&app);
    browser.post("/account", &[]);
    let page = browser.post("/account", &[]);
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.body.contains("action=\"/sign-out\""), "{}", page.body);
}

fn anonymous_pages_write_no_sessions(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let count = || {
        use diesel::prelude::*;
        let mut conn = app.pool.get().unwrap();
        flex_user::db::schema::sessions::table.count().get_result::<i64>(&mut *conn).unwrap()
    };
    for path in ["/", "/sign-in", "/sign-up", "/password-reset", "/nothing-here", "/account"] {
        for _ in 0..3 {
            Browser::new(&app).get(path);
        }
    }
    assert_eq!(count(), 0);
}

fn signed_out_visitors_are_sent_to_sign_in(db: &TestDb) {
    let app = spawn_app(db, &[]);
    let browser = Browser::new(&app);
    for path in ["/account", "/verify/email", "/verify/phone"] {
        let page = browser.get(path);
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        let location = page.location().unwrap();
        assert!(location.starts_with("/sign-in?next="), "{path}: {location}");
    }
    browser.get("/sign-in"); // a form page, for a token this visitor's cookie matches
    browser.post("/account", &[("username", "x")]).assert_redirect("/sign-in?next=/account");
}

fn a_dead_smtp_server_delays_nothing(db: &TestDb) {
    // nothing listens at first; a listener comes up on that port later
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let app = spawn_app(db, &[("FLEX_USER_SMTP_URL", &smtp_url)]);
    let browser = Browser::new(&app);
    let started = Instant::now();
    browser.sign_up(&[("email", "late@example.org"), ("password", PASSWORD)]).assert_redirect("/account");
    assert!(started.elapsed() < Duration::from_secs(5), "the response does not wait for SMTP");
    std::thread::sleep(Duration::from_millis(300));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let late = crate::common::sinks::SmtpSink::start_on(listener);
    let deadline = Instant::now() + Duration::from_secs(30);
    while late.mails().is_empty() {
        assert!(Instant::now() < deadline, "the message arrives once SMTP is up");
        // the worker's retry backoff runs on the app's clock
        app.clock.advance(chrono::Duration::seconds(2));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(late.mails()[0].to, ["late@example.org"]);
}

fn a_failure_inside_shows_a_500_page_without_internals(db: &TestDb) {
    use diesel::connection::SimpleConnection as _;
    let app = spawn_app(db, &[]);
    let browser = alice(&app);
    // break the database under the running server
    app.pool.get().unwrap().batch_execute("DROP TABLE otp_tokens").unwrap();
    let page = browser.get("/account");
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.body.contains("Something went wrong"));
    for internal in ["otp_tokens", "diesel", "no such table", "relation", "panicked", ".rs:"] {
        assert!(!page.body.contains(internal), "leaks {internal:?}: {}", page.body);
    }
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.header("content-security-policy").is_some());
}

/// PostgreSQL only: the database goes away under the running server.
#[test]
fn healthz_answers_503_when_the_database_is_gone() {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    let Some(db) = TestDb::new(crate::common::Backend::Postgres) else { return };
    let app = spawn_app(&db, &[]);
    let browser = Browser::new(&app);
    assert_eq!(browser.get("/healthz").status, StatusCode::OK);
    let flex_user::db::DatabaseUrl::Postgres(url) = &db.url else { unreachable!() };
    let name = url.rsplit('/').next().unwrap().to_owned();
    let admin = std::env::var("FLEX_USER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = diesel::PgConnection::establish(&admin).unwrap();
    conn.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).unwrap();
    let started = Instant::now();
    let page = browser.get("/healthz");
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(8), "a health check answers quickly");
}

fn cookies_are_secure_behind_https(db: &TestDb) {
    let app = spawn_app(db, &[("FLEX_USER_PUBLIC_URL", "https://auth.test")]);
    let browser = Browser::new(&app);
    let page = browser.get("/sign-up");
    let token = page.csrf_token().unwrap();
    let csrf = page.set_cookies().into_iter().find(|c| c.starts_with("__Host-flex_csrf=")).expect("a CSRF cookie");
    assert!(csrf.contains("Secure") && csrf.contains("HttpOnly") && csrf.contains("SameSite=Lax"), "{csrf}");
    // over this test's plain http the client would not send a Secure cookie back: send it by hand
    let value = csrf.split(';').next().unwrap().trim_start_matches("__Host-flex_csrf=").to_owned();
    let url = app.base.parse().unwrap();
    browser.jar.add_cookie_str(&format!("__Host-flex_csrf={value}; Path=/"), &url);
    let page =
        browser.post_raw("/sign-up", &[("csrf_token", &token), ("email", "s@example.org"), ("password", PASSWORD)]);
    page.assert_redirect("/account");
    let cookies = page.set_cookies();
    assert!(cookies.iter().any(|c| c.starts_with("__Host-flex_session=")), "{cookies:?}");
    for cookie in &cookies {
        // the `__Host-` prefix: browsers keep such a cookie only if Secure, Path=/ and no Domain,
        // so a sibling subdomain cannot plant one
        assert!(cookie.starts_with("__Host-"), "{cookie}");
        assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/"), "{cookie}");
        assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    }
    assert!(page.header("strict-transport-security").is_some());
    // the prefixed cookie is the one read: the session it names is signed in
    let session = cookies.iter().find(|c| c.starts_with("__Host-flex_session=")).unwrap();
    let session = session.split(';').next().unwrap().to_owned();
    browser.jar.add_cookie_str(&format!("{session}; Path=/"), &url);
    let account = browser.get("/account");
    assert_eq!(account.status, StatusCode::OK, "signed in through __Host-flex_session");
    assert!(account.body.contains("s@example.org"));
    // an unprefixed cookie (as a sibling subdomain could set) is not read as ours
    let planted = Browser::new(&app);
    planted.jar.add_cookie_str(&format!("flex_csrf={value}; Path=/"), &url);
    planted.jar.add_cookie_str(&format!("{}; Path=/", session.replacen("__Host-", "", 1)), &url);
    assert_eq!(planted.get("/account").location(), Some("/sign-in?next=/account"));
    let page = planted.post_raw("/sign-out", &[("csrf_token", &token)]);
    assert_eq!(page.status, StatusCode::FORBIDDEN, "an unprefixed CSRF cookie does not count");
}

fn sessions_end_when_idle_and_at_their_absolute_age(db: &TestDb) {
    let app = spawn_app(db, &[("FLEX_USER_SESSION_IDLE", "300"), ("FLEX_USER_SESSION_MAX_AGE", "900")]);
    let minutes = |m| app.clock.advance(chrono::Duration::minutes(m));

    // idle: unused for more than 5 minutes, the session is gone
    let idle = alice(&app);
    minutes(4);
    assert_eq!(idle.get("/account").status, StatusCode::OK, "4 minutes idle is fine");
    minutes(6);
    assert_eq!(idle.get("/account").status, StatusCode::SEE_OTHER, "6 minutes idle is too long");

    // absolute: used every 4 minutes, it still ends 15 minutes after sign-in
    let busy = Browser::new(&app);
    busy.sign_in("alice", PASSWORD).assert_redirect("/account");
    for _ in 0..3 {
        minutes(4);
        assert_eq!(busy.get("/account").status, StatusCode::OK);
    }
    minutes(4);
    assert_eq!(busy.get("/account").status, StatusCode::SEE_OTHER, "16 minutes after sign-in");
}

fn a_short_idle_timeout_slides_with_every_use(db: &TestDb) {
    // idle 60 s: the deadline may run at most min(60 s, idle / 10) = 6 s past last use + idle
    let app = spawn_app(db, &[("FLEX_USER_SESSION_IDLE", "60")]);
    let seconds = |s| app.clock.advance(chrono::Duration::seconds(s));
    let browser = alice(&app);
    for n in 1..=8 {
        seconds(50);
        assert_eq!(browser.get("/account").status, StatusCode::OK, "used every 50 s: still signed in at {}", n * 50);
    }
    seconds(60);
    assert_eq!(browser.get("/account").status, StatusCode::OK, "60 s idle is within the idle time");
    seconds(61 + 6);
    assert_eq!(browser.get("/account").location(), Some("/sign-in?next=/account"), "idle 67 s: signed out");
}

fn stale_throttle_rows_and_sessions_are_cleaned_up(db: &TestDb) {
    use diesel::prelude::*;
    use flex_user::db::schema::{sessions, throttles};
    let app = spawn_app(db, &[]);
    let rows = || {
        let mut conn = app.pool.get().unwrap();
        let t = throttles::table.count().get_result::<i64>(&mut *conn).unwrap();
        let s = sessions::table.count().get_result::<i64>(&mut *conn).unwrap();
        (t, s)
    };
    let browser = alice(&app);
    browser.sign_in("nobody-at-all", "x");
    browser.sign_in("nobody@example.org", "x");
    assert_eq!(rows(), (2, 1));
    app.flows.housekeeping().unwrap();
    assert_eq!(rows(), (2, 1), "nothing is stale yet");
    app.clock.advance(chrono::Duration::days(15));
    app.flows.housekeeping().unwrap();
    assert_eq!(rows(), (0, 0), "throttle rows a day old and expired sessions are gone");
}

fn two_instances_share_nothing_but_the_database_and_the_secret(db: &TestDb) {
    // two servers on one database with one secret, as behind a load balancer
    let a = spawn_app(db, &[]);
    let b = spawn_app(db, &[]);
    let on_a = alice(&a);
    let on_b = on_a.on(&b);
    let page = on_b.get("/account");
    assert_eq!(page.status, StatusCode::OK, "a session made on A is good on B");
    assert!(page.body.contains("alice@example.org"));
    // a form from B posts to A (CSRF tokens are keyed by the shared secret)
    let token = on_b.get("/account").csrf_token().unwrap();
    on_a.post_raw("/account", &[("csrf_token", &token), ("username", "alice2")]).assert_redirect("/account");
    assert!(on_b.get("/account").body.contains("alice2"));
    // signing out on B ends the session on A too
    on_b.post("/sign-out", &[]).assert_redirect("/");
    assert_eq!(on_a.get("/account").status, StatusCode::SEE_OTHER);
    // the sign-up's code went out once, from one of the two workers: once the outbox is done,
    // its row was claimed once and one mail arrived
    use diesel::prelude::*;
    use flex_user::db::schema::outbox;
    let rows = || -> Vec<(String, String, i32)> {
        let mut conn = a.pool.get().unwrap();
        outbox::table.select((outbox::recipient, outbox::status, outbox::attempts)).load(&mut *conn).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while rows().iter().any(|(_, status, _)| status == "pending") {
        assert!(Instant::now() < deadline, "the outbox never finished: {:?}", rows());
        std::thread::sleep(Duration::from_millis(50));
    }
    let email: Vec<_> = rows().into_iter().filter(|(to, ..)| to == "alice@example.org").collect();
    assert_eq!(email, [("alice@example.org".to_owned(), "sent".to_owned(), 1)], "one row, claimed once, sent");
    assert_eq!(a.emails_to("alice@example.org") + b.emails_to("alice@example.org"), 1, "one mail");
}

/// The identifier rules at the two forms that take them: deliverable email addresses only, and
/// no username that looks like a taken one.
mod identifier_rules {
    use super::*;
    use diesel::prelude::*;
    use flex_user::db::schema::users;

    on_both_databases!(
        undeliverable_emails_are_refused_at_sign_up_and_account,
        a_quoted_local_part_is_delivered_to,
        confusable_usernames_are_refused_at_sign_up_and_account,
    );

    /// Each passed the old validator, and the mailer could never send to any of them.
    const UNDELIVERABLE: [&str; 3] = [".x@example.com", "a..b@example.com", "x@[127.0.0.1]"];
    const INVALID_EMAIL: &str = "Enter a valid email address.";
    const TOO_SIMILAR: &str = "That username is too similar to an existing username.";

    fn user_count(app: &TestApp) -> i64 {
        let mut conn = app.pool.get().unwrap();
        users::table.count().get_result(&mut *conn).unwrap()
    }

    /// The form was re-shown with `message` and the typed value kept.
    fn reshown(page: &crate::common::app::Page, message: &str, typed: &str) {
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{typed}: {}", page.body);
        assert!(page.body.contains(message), "{typed}: {}", page.body);
        assert!(page.body.contains(&format!("value=\"{typed}\"")), "{typed} kept: {}", page.body);
    }

    fn undeliverable_emails_are_refused_at_sign_up_and_account(db: &TestDb) {
        let app = spawn_app(db, &[]);
        let browser = alice(&app);
        let before = user_count(&app);
        for bad in UNDELIVERABLE {
            let page = Browser::new(&app).sign_up(&[("username", "dotty"), ("email", bad), ("password", PASSWORD)]);
            reshown(&page, INVALID_EMAIL, bad);
            let page = browser.post("/account", &[("email", bad), ("current_password", PASSWORD)]);
            reshown(&page, INVALID_EMAIL, bad);
        }
        assert_eq!(user_count(&app), before, "nothing created");
        let alice = app.accounts.find_user(&flex_user::domain::Identifier::infer("alice", None).unwrap()).unwrap();
        assert_eq!(alice.unwrap().email.unwrap().as_str(), "alice@example.org", "nothing changed");
        std::thread::sleep(Duration::from_millis(300));
        assert!(app.smtp.mails().iter().all(|m| m.to == ["alice@example.org"]), "no code sent anywhere else");
    }

    fn a_quoted_local_part_is_delivered_to(db: &TestDb) {
        let app = spawn_app(db, &[]);
        let browser = Browser::new(&app);
        // (quoted for its double dot; the test's SMTP listener takes no space in an address)
        browser.sign_up(&[("email", "\"john..doe\"@Example.org"), ("password", PASSWORD)]).assert_redirect("/account");
        let mail = app.email_to("\"john..doe\"@example.org", 0);
        let code = code_in(&mail, 6).expect("a code");
        browser.get("/verify/email");
        browser.post("/verify/email", &[("code", &code)]).assert_redirect("/account");
        let stored = flex_user::domain::Identifier::infer("\"john..doe\"@example.org", None).unwrap();
        let user = app.accounts.find_user(&stored).unwrap().expect("the account");
        assert!(app.accounts.email_token(user.id).unwrap().unwrap().state.verified);
        let page = Browser::new(&app).sign_up(&[("email", "\"John..Doe\"@example.org"), ("password", PASSWORD)]);
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.body.contains("A user with that email address already exists."));
    }

    fn confusable_usernames_are_refused_at_sign_up_and_account(db: &TestDb) {
        let app = spawn_app(db, &[]);
        Browser::new(&app).sign_up(&[("username", "admin"), ("password", PASSWORD)]).assert_redirect("/account");
        let before = user_count(&app);
        // U+0131 LATIN SMALL LETTER DOTLESS I
        let look_alike = "adm\u{131}n";
        let page = Browser::new(&app).sign_up(&[("username", look_alike), ("password", PASSWORD)]);
        reshown(&page, TOO_SIMILAR, look_alike);
        assert_eq!(user_count(&app), before, "nothing created");

        let browser = alice(&app);
        let page = browser.post("/account", &[("username", look_alike)]);
        reshown(&page, TOO_SIMILAR, look_alike);
        assert!(browser.get("/").body.contains("alice"), "nothing changed");
        // not similar: fine
        browser.post("/account", &[("username", "administrator")]).assert_redirect("/account");
    }
}
