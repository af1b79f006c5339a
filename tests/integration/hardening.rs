//! The request guards under attack: a body that stalls or never ends, and the per-IP limit on
//! POSTs (shared by every instance, IPv6 per /64, exact under concurrency). Raw TCP where a
//! well-behaved client cannot misbehave enough.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::TestDb;
use crate::common::app::{Browser, TestApp, spawn_app};
use flex_user::clock::Clock as _;
use reqwest::StatusCode;

on_both_databases!(
    a_chunked_body_over_the_limit_gets_413_before_the_ip_limit,
    every_instance_shares_one_bucket_per_client,
    ipv6_clients_are_counted_per_64,
    parallel_posts_from_one_client_let_through_exactly_the_limit,
    a_limit_of_zero_is_off_and_full_buckets_are_pruned,
);

/// What the server answered on one connection, and whether it then closed it.
struct Exchange {
    response: String,
    closed: bool,
}

impl Exchange {
    fn status(&self) -> u16 {
        self.response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    fn header(&self, name: &str) -> Option<&str> {
        let head = self.response.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// Writes `parts` on a fresh connection (write errors ignored: the server may stop reading),
/// then reads until the server closes it or `wait` has passed.
fn exchange(app: &TestApp, parts: &[&[u8]], wait: Duration) -> Exchange {
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://")).unwrap();
    for part in parts {
        let _ = stream.write_all(part);
    }
    let deadline = Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break false,
            // a reset after the answer was read still ends the connection
            Err(_) => break true,
        }
    };
    Exchange { response: String::from_utf8_lossy(&bytes).into_owned(), closed }
}

/// A chunked POST head (no length declared), asking the server to close after answering.
fn chunked_head(path: &str, cookie: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: auth.test\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn assert_security_headers(answer: &Exchange) {
    let csp = answer.header("content-security-policy").unwrap_or_else(|| panic!("CSP: {}", answer.response));
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert!(answer.header("content-type").is_some_and(|v| v.starts_with("text/html")), "our page");
}

/// SQLite only: the database plays no part, and the wait is 10 real seconds.
#[test]
fn a_stalled_body_gets_408_and_the_connection_is_closed() {
    let db = TestDb::new(crate::common::Backend::Sqlite).unwrap();
    let app = spawn_app(&db, &[]);
    let declared = "POST /sign-in HTTP/1.1\r\nHost: auth.test\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                    Content-Length: 100\r\n\r\n";
    let chunked = chunked_head("/sign-in", "x=y").replace("Connection: close\r\n", "");
    let started = Instant::now();
    // the headers and 5 bytes of the body, then silence: with a declared length, and chunked
    let (declared, chunked) = std::thread::scope(|s| {
        let chunked = s.spawn(|| exchange(&app, &[chunked.as_bytes(), &chunk(b"ident")], Duration::from_secs(15)));
        let declared = exchange(&app, &[declared.as_bytes(), b"ident"], Duration::from_secs(15));
        (declared, chunked.join().unwrap())
    });
    let elapsed = started.elapsed();
    for answer in [&declared, &chunked] {
        assert_eq!(answer.status(), 408, "a 408 within 15 s: {:?}", answer.response);
        assert!(answer.closed, "the connection is closed after the 408");
        assert_eq!(answer.header("connection"), Some("close"));
        assert_security_headers(answer);
        assert!(answer.response.contains("did not arrive in time"), "{}", answer.response);
    }
    assert!(elapsed >= Duration::from_secs(9), "not before the 10 s are up: {elapsed:?}");

    // a whole body is read as usual
    let browser = Browser::new(&app);
    let page = browser.sign_in("nobody", "wrong password");
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
}

fn a_chunked_body_over_the_limit_gets_413_before_the_ip_limit(db: &TestDb) {
    let app = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "2")]);
    let browser = Browser::new(&app);
    let token = browser.get("/sign-in").csrf_token().unwrap();
    let cookie = format!("flex_csrf={}", browser.cookie("flex_csrf").unwrap());

    // a chunked form under the limit reaches the handler whole (first POST of two)
    let form = format!("csrf_token={token}&identifier=nobody&password=wrong+password");
    let (first, second) = form.as_bytes().split_at(20);
    let head = chunked_head("/sign-in", &cookie);
    let answer =
        exchange(&app, &[head.as_bytes(), &chunk(first), &chunk(second), b"0\r\n\r\n"], Duration::from_secs(15));
    assert_eq!(answer.status(), 401, "the handler read the form: {}", answer.response);

    // the second POST empties this client's bucket
    assert_eq!(browser.post_raw("/sign-in", &[]).status, StatusCode::FORBIDDEN);

    // 65 KiB in 1 KiB chunks, no length declared: 413 comes before the per-IP 429
    let kib = chunk(&[b'a'; 1024]);
    let mut parts: Vec<&[u8]> = vec![head.as_bytes()];
    parts.extend(std::iter::repeat_n(kib.as_slice(), 65));
    let answer = exchange(&app, &parts, Duration::from_secs(15));
    assert_eq!(answer.status(), 413, "{}", answer.response);
    assert!(answer.closed, "the rest of the body is not waited for");
    assert_security_headers(&answer);

    let page = browser.post_raw("/sign-in", &[]);
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "the 413 spent nothing; the bucket was empty");
    assert!(page.header("content-security-policy").is_some() && page.header("retry-after").is_some());
}

/// A POST with `X-Forwarded-For: ip` through the trusted proxy (no CSRF token: 403 once it is
/// past the per-IP limit).
fn post_from(app: &TestApp, ip: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{}/sign-in", app.base))
        .header("x-forwarded-for", ip)
        .form(&[("identifier", "x")])
        .send()
        .unwrap()
}

fn every_instance_shares_one_bucket_per_client(db: &TestDb) {
    let a = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "3")]);
    let b = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "3")]);
    b.clock.set(a.clock.now());
    let on_a = Browser::new(&a);
    let on_b = on_a.on(&b);
    for browser in [&on_a, &on_b, &on_a] {
        assert_eq!(browser.post_raw("/sign-in", &[]).status, StatusCode::FORBIDDEN);
    }
    let page = on_b.post_raw("/sign-in", &[]);
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "B counts what A let through");
    assert_eq!(page.header("retry-after"), Some("20"), "3 a minute: the next one in 20 s");

    // 20 s later there is room for exactly one more, on either instance
    for app in [&a, &b] {
        app.clock.advance(chrono::Duration::seconds(19));
    }
    assert_eq!(on_a.post_raw("/sign-in", &[]).header("retry-after"), Some("1"));
    for app in [&a, &b] {
        app.clock.advance(chrono::Duration::seconds(1));
    }
    assert_eq!(on_a.post_raw("/sign-in", &[]).status, StatusCode::FORBIDDEN);
    assert_eq!(on_b.post_raw("/sign-in", &[]).status, StatusCode::TOO_MANY_REQUESTS);
}

fn ipv6_clients_are_counted_per_64(db: &TestDb) {
    let app = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "2"), ("FLEX_USER_TRUSTED_PROXIES", "127.0.0.1")]);
    for ip in ["2001:db8:1:2::1", "2001:db8:1:2::1"] {
        assert_eq!(post_from(&app, ip).status(), StatusCode::FORBIDDEN, "{ip}");
    }
    let same_64 = post_from(&app, "2001:db8:1:2:ffff:ffff:ffff:9");
    assert_eq!(same_64.status(), StatusCode::TOO_MANY_REQUESTS, "another address of the same /64");
    assert!(same_64.headers().contains_key("retry-after") && same_64.headers().contains_key("content-security-policy"));
    assert_eq!(post_from(&app, "2001:db8:1:3::1").status(), StatusCode::FORBIDDEN, "another /64 has its own");

    // IPv4 per address; an IPv4 address mapped into IPv6 is that address
    for ip in ["198.51.100.1", "::ffff:198.51.100.1"] {
        assert_eq!(post_from(&app, ip).status(), StatusCode::FORBIDDEN, "{ip}");
    }
    assert_eq!(post_from(&app, "198.51.100.1").status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(post_from(&app, "198.51.100.2").status(), StatusCode::FORBIDDEN);

    // the rows hold keyed hashes, never the address
    use diesel::prelude::*;
    let keys: Vec<String> = flex_user::db::schema::ip_limits::table
        .select(flex_user::db::schema::ip_limits::key)
        .load(&mut *app.pool.get().unwrap())
        .unwrap();
    assert_eq!(keys.len(), 4);
    assert!(keys.iter().all(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit())), "{keys:?}");
}

fn parallel_posts_from_one_client_let_through_exactly_the_limit(db: &TestDb) {
    const LIMIT: usize = 5;
    const PARALLEL: usize = 24;
    let app = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", &LIMIT.to_string())]);
    let client = reqwest::blocking::Client::new();
    let start = std::sync::Barrier::new(PARALLEL);
    let statuses: Vec<StatusCode> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..PARALLEL)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    client.post(format!("{}/sign-in", app.base)).form(&[("identifier", "x")]).send().unwrap().status()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let passed = statuses.iter().filter(|s| **s == StatusCode::FORBIDDEN).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((passed, limited), (LIMIT, PARALLEL - LIMIT), "{statuses:?}");
}

fn a_limit_of_zero_is_off_and_full_buckets_are_pruned(db: &TestDb) {
    use diesel::prelude::*;
    use flex_user::db::{ip_limits, schema};
    let rows =
        |app: &TestApp| schema::ip_limits::table.count().get_result::<i64>(&mut *app.pool.get().unwrap()).unwrap();

    let off = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "0")]);
    let browser = Browser::new(&off);
    for _ in 0..10 {
        assert_eq!(browser.post_raw("/sign-in", &[]).status, StatusCode::FORBIDDEN);
    }
    assert_eq!(rows(&off), 0, "off: nothing is written");
    drop(off);

    let app = spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "3")]);
    let browser = Browser::new(&app);
    for _ in 0..3 {
        browser.post_raw("/sign-in", &[]);
    }
    let prune = || ip_limits::prune(&mut app.pool.get().unwrap(), app.clock.now()).unwrap();
    assert_eq!(prune(), 0, "the bucket is not full again yet");
    app.clock.advance(chrono::Duration::seconds(59));
    assert_eq!(prune(), 0);
    app.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(prune(), 1, "a minute later the bucket is full: the row goes");
    assert_eq!(rows(&app), 0);
    for _ in 0..3 {
        assert_eq!(browser.post_raw("/sign-in", &[]).status, StatusCode::FORBIDDEN, "a full bucket again");
    }
    assert_eq!(browser.post_raw("/sign-in", &[]).status, StatusCode::TOO_MANY_REQUESTS);
}
