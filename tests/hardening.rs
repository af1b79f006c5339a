//! The request guards under attack: a body that stalls or never ends. Raw TCP where a
//! well-behaved client cannot misbehave enough.

mod common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestDb;
use common::app::{Browser, TestApp, spawn_app};
use reqwest::StatusCode;

on_both_databases!(a_chunked_body_over_the_limit_gets_413_before_the_ip_limit);

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
    let db = TestDb::new(common::Backend::Sqlite).unwrap();
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
    let token = browser.token();
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
