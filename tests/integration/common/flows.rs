//! People and steps the flow tests share: Alice's account, codes read from the sinks, the pages'
//! rows, and assertions on statuses and redirects.
#![allow(dead_code)]

use diesel::prelude::*;
use flex_user::User;
use flex_user::db::schema::outbox;
use flex_user::domain::Identifier;
use reqwest::StatusCode;

use super::TestDb;
use super::app::{Browser, Page, TestApp, spawn_app};

pub const PASSWORD: &str = "correct horse battery";
pub const NEW_PASSWORD: &str = "purple monkey dishwasher";
pub const ALICE_EMAIL: &str = "alice@example.org";
pub const ALICE_PHONE: &str = "+12025551234";
pub const OTHER_PHONE: &str = "+12025559876";

/// The app as every test here wants it: no per-IP limit (these tests POST a lot from one IP).
pub fn spawn(db: &TestDb, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("FLEX_USER_IP_RATE_LIMIT", "0")];
    vars.extend_from_slice(extra);
    spawn_app(db, &vars)
}

pub fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

/// Past the resend cooldown (60 s by default).
pub fn past_cooldown(app: &TestApp) {
    app.clock.advance(secs(61));
}

/// Alice signs up with a username, an email and a phone; her sign-up codes are delivered.
pub fn alice(app: &TestApp) -> Browser<'_> {
    let browser = Browser::new(app);
    browser
        .sign_up(&[("username", "alice"), ("email", ALICE_EMAIL), ("phone", ALICE_PHONE), ("password", PASSWORD)])
        .assert_redirect("/account");
    app.email_to(ALICE_EMAIL, 0);
    app.sms_to(ALICE_PHONE, 0);
    browser.get("/account"); // where the sign-up sent her
    browser
}

/// The user an identifier names, from the library.
pub fn user(app: &TestApp, identifier: &str) -> Option<User> {
    app.accounts.find_user(&Identifier::infer(identifier, None).unwrap()).unwrap()
}

/// The maximal runs of ASCII digits in `text`.
pub fn digit_runs(text: &str) -> Vec<&str> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in text.bytes().enumerate().chain([(text.len(), b' ')]) {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push(&text[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// The one code in a message text: the only run of `len` or more digits, exactly `len` long.
pub fn sole_code(text: &str, len: usize) -> String {
    let long: Vec<&str> = digit_runs(text).into_iter().filter(|r| r.len() >= len).collect();
    assert_eq!(long.len(), 1, "exactly one run of {len} or more digits in {text:?}");
    assert_eq!(long[0].len(), len, "the code has exactly {len} digits: {text:?}");
    long[0].to_owned()
}

/// The text/plain part of a raw email as the SMTP sink got it, decoded (7bit, 8bit,
/// quoted-printable or base64); `None` without one. Headers and MIME boundaries are left out: a
/// Message-ID or a boundary can hold a run of digits that looks like a code.
pub fn text_part(raw: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = raw.replace("\r\n", "\n");
    let at = raw.to_ascii_lowercase().find("content-type: text/plain")?;
    let (headers, body) = raw[at..].split_once("\n\n")?;
    let body = body.find("\n--").map_or(body, |end| &body[..end]);
    let encoding = headers.to_ascii_lowercase();
    if encoding.contains("content-transfer-encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD.decode(joined).unwrap_or_default();
        return Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    if !encoding.contains("quoted-printable") {
        return Some(body.to_owned());
    }
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The text/plain part of a raw email, which every message has.
pub fn plain_text(raw: &str) -> String {
    text_part(raw).unwrap_or_else(|| panic!("no text/plain part in {raw}"))
}

/// The code of `len` digits in a raw email's text part.
pub fn mail_code(raw: &str, len: usize) -> Option<String> {
    super::app::code_in(&text_part(raw)?, len)
}

/// The code in the plain text of the `nth` email to `to` (default length).
pub fn mailed_code(app: &TestApp, to: &str, nth: usize) -> String {
    sole_code(&plain_text(&app.email_to(to, nth)), 6)
}

/// The code of the `nth` SMS to `to` (default length), checked against its WebOTP line.
pub fn texted_code(app: &TestApp, to: &str, nth: usize) -> String {
    let sms = app.sms_to(to, nth);
    let (text, webotp) = sms.trim_end().rsplit_once('\n').expect("a WebOTP line");
    let code = sole_code(text, 6);
    assert_eq!(webotp, format!("@auth.test #{code}"));
    code
}

/// A code that is not `code`.
pub fn wrong(code: &str) -> String {
    code.chars().map(|c| if c == '1' { '2' } else { '1' }).collect()
}

/// Rows ever queued in the outbox for `recipient` (compared case-insensitively): (codes, notices).
pub fn queued(app: &TestApp, recipient: &str) -> (usize, usize) {
    let mut conn = app.pool.get().unwrap();
    let rows: Vec<(String, Option<i64>)> =
        outbox::table.select((outbox::recipient, outbox::token_id)).load(&mut *conn).unwrap();
    let mine: Vec<_> = rows.into_iter().filter(|(to, _)| to.eq_ignore_ascii_case(recipient)).collect();
    let codes = mine.iter().filter(|(_, token)| token.is_some()).count();
    (codes, mine.len() - codes)
}

pub fn outbox_rows(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    outbox::table.count().get_result(&mut *conn).unwrap()
}

/// The identifiers row of the account page labelled `label` ("Email", "Phone").
pub fn row<'a>(body: &'a str, label: &str) -> &'a str {
    let start = body.find(&format!("<dt>{label}</dt>")).unwrap_or_else(|| panic!("no {label} row: {body}"));
    let rest = &body[start..];
    &rest[..rest.find("</dd>").expect("the row ends")]
}

pub fn is_verified(row: &str) -> bool {
    match (row.contains(">Verified<"), row.contains("Not verified")) {
        (true, false) => true,
        (false, true) => false,
        _ => panic!("neither verified nor not: {row}"),
    }
}

/// A link to `/verify/CHANNEL` or a button posting to `/verify/CHANNEL/send`.
pub fn offers_verification(row: &str, channel: &str) -> bool {
    row.contains(&format!("href=\"/verify/{channel}\"")) || row.contains(&format!("action=\"/verify/{channel}/send\""))
}

/// The page with every CSRF token value blanked (they differ per visitor).
pub fn without_tokens(body: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let mut out = String::new();
    let mut rest = body;
    while let Some(at) = rest.find(marker) {
        let value_start = at + marker.len();
        out.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        rest = &rest[rest.find('"').expect("the value ends")..];
    }
    out.push_str(rest);
    out
}

/// The cookies a response sets, by name and attributes (values left out).
pub fn cookie_shapes(page: &Page) -> Vec<String> {
    let mut shapes: Vec<String> = page
        .set_cookies()
        .iter()
        .map(|cookie| {
            let mut parts = cookie.split(';').map(str::trim);
            let name = parts.next().unwrap().split('=').next().unwrap().to_owned();
            // an expiry date moves with the clock: its presence is the attribute
            let mut attributes: Vec<&str> =
                parts.map(|a| if a.to_ascii_lowercase().starts_with("expires=") { "Expires" } else { a }).collect();
            attributes.sort();
            format!("{name}; {}", attributes.join("; "))
        })
        .collect();
    shapes.sort();
    shapes
}

pub fn assert_status(page: &Page, status: StatusCode) {
    assert_eq!(page.status, status, "{}", page.body);
}

pub fn assert_retry_after(page: &Page, secs: u64) {
    assert_status(page, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(page.header("retry-after"), Some(secs.to_string().as_str()), "{}", page.body);
    let plural = if secs == 1 { "" } else { "s" };
    assert!(page.body.contains(&format!("Try again in {secs} second{plural}")), "{}", page.body);
}

/// `GET /account` sent a signed-out visitor to sign in.
pub fn assert_signed_out(page: &Page) {
    assert_status(page, StatusCode::SEE_OTHER);
    let location = page.location().unwrap_or_default().replace("%2F", "/");
    assert_eq!(location, "/sign-in?next=/account");
}

pub fn request_reset<'a>(app: &'a TestApp, identifier: &str) -> Browser<'a> {
    let browser = Browser::new(app);
    browser.get("/password-reset");
    browser.post("/password-reset", &[("identifier", identifier)]).assert_redirect("/password-reset/verify");
    browser
}

/// A password reset through `email` carried to its end (the code of its `nth` email): the new
/// password is set and the reset's browser lands on `/sign-in`.
pub fn reset_through_email(app: &TestApp, email: &str, nth: usize, new_password: &str) {
    let reset = request_reset(app, email);
    let code = app.email_code(email, nth);
    reset.get("/password-reset/verify");
    reset.post("/password-reset/verify", &[("code", &code)]).assert_redirect("/password-reset/new");
    reset.get("/password-reset/new");
    reset.post("/password-reset/new", &[("new_password", new_password)]).assert_redirect("/sign-in");
}
