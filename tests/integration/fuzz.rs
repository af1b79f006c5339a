//! Property tests (proptest): the identifier parsers on any string, the form decoder of every
//! POST route on arbitrary bodies, and the code normaliser. A fixed number of cases each
//! (`PROPTEST_CASES`, default 256; a quarter of that for the HTTP ones), so the file runs in
//! well under a minute.

use std::time::Duration;

use crate::common::app::{Browser, TestApp, spawn_app};
use crate::common::{Backend, TestDb};
use flex_user::NewUser;
use flex_user::domain::{Email, Identifier, Phone, Region, Username};
use icu_properties::CodePointMapData;
use icu_properties::props::GeneralCategory;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use unicode_normalization::UnicodeNormalization;

/// The default number of cases (256, or `PROPTEST_CASES`), never written to a regressions file
/// in the source tree: a failure prints its minimal input.
fn config() -> Config {
    Config { failure_persistence: None, ..Config::default() }
}

/// Fewer cases for the properties that cost a request or a database write each.
fn config_slow() -> Config {
    let default = config();
    Config { cases: (default.cases / 4).max(1), ..default }
}

// ---------------------------------------------------------------------------------------------
// strategies

/// Characters the identifier rules are about: look-alikes (Cyrillic `а`, dotless `ı`),
/// compatibility forms that NFKC turns into `@`, `+`, `.` or digits, digits of other scripts,
/// invisible and combining characters, case-folding oddities, other scripts.
const SPECIALS: &[&str] = &[
    "а", "е", "о", "ı", "İ", "ß", "ẞ", "ﬁ", "ﬀ", "Ａ", "１", "²", "½", "Ⅻ", "①", "٣", "०", "፩", "\u{200B}", "\u{200D}",
    "\u{0301}", "\u{030C}", "\u{FE0F}", "\u{3164}", "\u{FEFF}", "\u{00A0}", "\u{2028}", "\u{00AD}", "ǰ", "J\u{30C}",
    "例", "ア", "한", "Ω", "ω", "xn--", "\u{FF20}", "\u{FE6B}", "\u{FF0B}", "\u{2024}", "\u{2025}", "\u{FF0E}",
    "\u{0665}", "\u{202E}", "\"", "\\", "[", "]", "(", ")", "<", ">", ",", ";", ":", "\t", "\n",
];

/// Text shaped like what people type into an identifier field.
fn typed() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-z]{1,6}",
        2 => "[A-Z0-9]{1,4}",
        2 => prop::sample::select(vec!["@", "+", ".", "..", "_", "-", " ", "  "]).prop_map(String::from),
        2 => prop::sample::select(SPECIALS).prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

/// `local@domain` with typed-looking parts, and domains with dots, dashes, IDNA and oddities.
fn email_like() -> impl Strategy<Value = String> {
    let domain = prop_oneof![
        "[a-z0-9-]{1,8}(\\.[a-z0-9-]{1,8}){0,2}",
        "[A-Za-z]{1,5}\\.[a-z]{2,4}\\.?",
        (typed(), "[a-z]{2,4}").prop_map(|(label, tld)| format!("{label}.{tld}")),
        Just("[127.0.0.1]".to_owned()),
        Just("bücher.example".to_owned()),
        Just("xn--bcher-kva.example".to_owned()),
    ];
    (typed(), domain).prop_map(|(local, domain)| format!("{local}@{domain}"))
}

/// Phone numbers as typed, well-formed or not, with other scripts' digits.
fn phone_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\+1 ?\\(?[2-9][0-9]{2}\\)? ?[2-9][0-9]{2}[ .-]?[0-9]{4}",
        "\\+[1-9][0-9]{6,14}",
        "\\+?[0-9 ().-]{0,20}",
        "\\+[٠-٩]{8,12}",
        "[0-9]{10}",
    ]
}

/// Any string: arbitrary Unicode, or one of the shapes above.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), typed(), email_like(), phone_like()]
}

fn us() -> Option<Region> {
    Some(Region::parse("US").unwrap())
}

fn is_decimal_digit(c: char) -> bool {
    CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::DecimalNumber
}

// ---------------------------------------------------------------------------------------------
// identifiers: pure properties

proptest! {
    #![proptest_config(config())]

    /// `Identifier::infer` never panics, and what it accepts, written out and read again, is
    /// the same identifier of the same kind with the same key.
    #[test]
    fn identifier_inference_never_panics_and_is_idempotent(raw in any_text(), region in prop::option::of(Just(())) ) {
        let region = region.and(us());
        if let Ok(identifier) = Identifier::infer(&raw, region) {
            let canonical = match &identifier {
                Identifier::Username(u) => u.as_str().to_owned(),
                Identifier::Email(e) => e.as_str().to_owned(),
                Identifier::Phone(p) => p.as_str().to_owned(),
            };
            let again = Identifier::infer(&canonical, region);
            prop_assert_eq!(again.as_ref(), Ok(&identifier), "{:?} read as {:?}", raw, canonical);
            prop_assert_eq!(again.unwrap().key(), identifier.key());
        }
    }

    /// An accepted username is its own NFKC form, re-parses to itself, and can never be read as
    /// an email or a phone: no `@`, no `+`, no leading digit of any script.
    #[test]
    fn usernames_reparse_to_themselves_and_never_look_like_an_address(raw in prop_oneof![any::<String>(), typed()]) {
        if let Ok(username) = Username::parse(&raw) {
            let text = username.as_str();
            prop_assert_eq!(Username::parse(text), Ok(username.clone()));
            prop_assert_eq!(text.nfkc().collect::<String>(), text);
            prop_assert!(!text.contains('@') && !text.contains('+'), "{:?}", text);
            let first = text.chars().next().unwrap();
            prop_assert!(!is_decimal_digit(first), "{:?} starts with a digit", text);
            prop_assert!(text.chars().count() <= 150);
            // the key is stable: the same name typed again has the same key
            prop_assert_eq!(Username::parse(text).unwrap().key(), username.key());
        }
    }

    /// An accepted email re-parses to itself, with an ASCII, lower-case domain.
    #[test]
    fn emails_reparse_to_themselves(raw in prop_oneof![email_like(), any::<String>()]) {
        if let Ok(email) = Email::parse(&raw) {
            let text = email.as_str();
            prop_assert_eq!(Email::parse(text), Ok(email.clone()));
            let (_, domain) = text.rsplit_once('@').unwrap();
            prop_assert!(domain.is_ascii() && domain == domain.to_ascii_lowercase(), "{:?}", text);
            prop_assert_eq!(Email::parse(&email.key()).unwrap().key(), email.key());
        }
    }

    /// An accepted phone number is E.164 (`+` and at most 15 digits) and re-parses to itself,
    /// with or without a default region.
    #[test]
    fn phones_are_e164_and_reparse_to_themselves(raw in prop_oneof![phone_like(), any::<String>()], region in prop::option::of(Just(()))) {
        let region = region.and(us());
        if let Ok(phone) = Phone::parse(&raw, region) {
            let text = phone.as_str();
            let digits = text.strip_prefix('+').unwrap_or_default();
            prop_assert!(!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()), "{:?}", text);
            prop_assert_eq!(Phone::parse(text, None), Ok(phone.clone()));
            prop_assert_eq!(Phone::parse(text, us()), Ok(phone.clone()));
        }
    }
}

/// An accepted email has no `..`, no dot at either end of its local part, and a domain name
/// rather than an address literal (CONTRACT.md, "Identifiers").
fn assert_deliverable_shape(email: &Email) -> Result<(), TestCaseError> {
    let text = email.as_str();
    let (local, domain) = text.rsplit_once('@').unwrap();
    prop_assert!(!text.contains(".."), "{:?}", text);
    prop_assert!(!local.starts_with('.') && !local.ends_with('.'), "{:?}", text);
    prop_assert!(!domain.starts_with('['), "an address literal: {:?}", text);
    Ok(())
}

#[test]
fn parsed_emails_have_no_double_dots_and_no_address_literals() {
    let mut runner = TestRunner::new(config());
    runner
        .run(&prop_oneof![email_like(), any::<String>()], |raw| {
            if let Ok(email) = Email::parse(&raw) {
                assert_deliverable_shape(&email)?;
            }
            Ok(())
        })
        .unwrap();
}

/// What the property above found, as plain examples.
#[test]
fn emails_with_dots_out_of_place_or_address_literals_are_refused() {
    for raw in ["a..b@example.org", ".a@example.org", "a.@example.org", "a@[127.0.0.1]"] {
        assert!(Email::parse(raw).is_err(), "{raw:?} was accepted as {:?}", Email::parse(raw));
    }
}

/// The other half of the contract's rule: a quoted local part can be delivered to.
#[test]
fn quoted_local_parts_are_accepted() {
    for raw in ["\"john doe\"@example.org", "\"a@b\"@example.org"] {
        let email = Email::parse(raw).unwrap_or_else(|e| panic!("{raw:?} was refused: {e}"));
        assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
    }
}

// ---------------------------------------------------------------------------------------------
// the form decoder, over HTTP

/// Every route that takes a POST.
const FORM_ROUTES: &[&str] = &[
    "/sign-up",
    "/sign-in",
    "/sign-out",
    "/account",
    "/account/password",
    "/verify/email",
    "/verify/phone",
    "/verify/email/send",
    "/verify/phone/send",
    "/password-reset",
    "/password-reset/verify",
    "/password-reset/new",
];

/// Field names the forms read, and some they do not.
const FIELDS: &[&str] = &[
    "csrf_token",
    "username",
    "email",
    "phone",
    "password",
    "identifier",
    "next",
    "current_password",
    "new_password",
    "code",
    "",
    "username[]",
    "a%00b",
];

const CONTENT_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/x-www-form-urlencoded; charset=latin1",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/json",
];

const PASSWORD: &str = "correct horse battery";
const EMAIL: &str = "fuzz@example.org";

/// A POST body and how it is sent.
#[derive(Debug, Clone)]
struct Post {
    route: &'static str,
    signed_in: bool,
    content_type: &'static str,
    /// Sent right after `csrf_token=…&`, so the forms themselves see it.
    body: Vec<u8>,
}

/// urlencoded bodies: any fields (known or not, repeated or not) with any values.
fn urlencoded_post() -> impl Strategy<Value = Post> {
    let field = (prop::sample::select(FIELDS), prop_oneof![any::<String>(), typed(), email_like(), "[0-9 -]{0,12}"]);
    (prop::sample::select(FORM_ROUTES), any::<bool>(), prop::collection::vec(field, 0..6)).prop_map(
        |(route, signed_in, fields)| {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in &fields {
                form.append_pair(name, value);
            }
            let content_type = CONTENT_TYPES[0];
            Post { route, signed_in, content_type, body: form.finish().into_bytes() }
        },
    )
}

/// Arbitrary bytes, with any of several content types.
fn raw_post() -> impl Strategy<Value = Post> {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        "[a-z_%=&+0-9A-F]{0,200}".prop_map(String::into_bytes),
    ];
    (prop::sample::select(FORM_ROUTES), any::<bool>(), prop::sample::select(CONTENT_TYPES), bytes)
        .prop_map(|(route, signed_in, content_type, body)| Post { route, signed_in, content_type, body })
}

/// A server on SQLite, an anonymous visitor and a signed-in one, and a client that sends raw
/// bodies with either's cookies.
struct Target<'a> {
    app: &'a TestApp,
    anonymous: Browser<'a>,
    signed_in: Browser<'a>,
}

impl<'a> Target<'a> {
    fn new(app: &'a TestApp) -> Target<'a> {
        let signed_in = Browser::new(app);
        signed_in
            .sign_up(&[("username", "fuzzer"), ("email", EMAIL), ("password", PASSWORD)])
            .assert_redirect("/account");
        Target { app, anonymous: Browser::new(app), signed_in }
    }

    /// Sends `post` as its browser would (with that browser's CSRF token first); returns the status.
    fn send(&self, post: &Post) -> StatusCode {
        let browser = if post.signed_in { &self.signed_in } else { &self.anonymous };
        if post.signed_in && browser.get("/account").status != StatusCode::OK {
            // an earlier case signed out, or changed the username: sign in again by email
            browser.sign_in(EMAIL, PASSWORD).assert_redirect("/account");
            browser.get("/account");
        } else if !post.signed_in {
            browser.get("/sign-in"); // an earlier case may have signed it in or out
        }
        let mut body = format!("csrf_token={}&", browser.token()).into_bytes();
        body.extend_from_slice(&post.body);
        let client = reqwest::blocking::Client::builder()
            .cookie_provider(browser.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let response = client
            .post(format!("{}{}", self.app.base, post.route))
            .header("content-type", post.content_type)
            .body(body)
            .send()
            .expect("the server answers");
        response.status()
    }
}

fn fuzz_forms(strategy: impl Strategy<Value = Post>) {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let app = spawn_app(&db, &[("FLEX_USER_IP_RATE_LIMIT", "0")]);
    let target = Target::new(&app);
    let mut runner = TestRunner::new(config_slow());
    runner
        .run(&strategy, |post| {
            let status = target.send(&post);
            prop_assert!(!status.is_server_error(), "{} for {:?}", status, post);
            prop_assert_ne!(status, StatusCode::OK, "a POST never answers 200: {:?}", post);
            Ok(())
        })
        .unwrap();
}

/// Arbitrary urlencoded forms to every POST route, signed in and out: never a 5xx, never a
/// 200 (a POST answers a redirect, a re-shown form or a refusal).
#[test]
fn every_form_route_survives_arbitrary_fields() {
    fuzz_forms(urlencoded_post());
}

/// Arbitrary bytes, under several content types, to every POST route.
#[test]
fn every_form_route_survives_arbitrary_bytes() {
    fuzz_forms(raw_post());
}

// ---------------------------------------------------------------------------------------------
// the code normaliser

/// What people put between the digits of a code they type.
fn separators(len: usize) -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(vec!["", "", " ", "-", "  ", " - ", "\t", "--"]), len + 1)
}

/// `code` with `separators[i]` before its i-th digit and the last one after it.
fn spaced(code: &str, separators: &[&str]) -> String {
    let mut typed = String::new();
    for (digit, separator) in code.chars().zip(separators) {
        typed.push_str(separator);
        typed.push(digit);
    }
    typed.push_str(separators.last().copied().unwrap_or_default());
    typed
}

/// A code typed with spaces and dashes anywhere is accepted as the code; a wrong code typed
/// the same way is still refused. Through the library API, on SQLite.
#[test]
fn codes_typed_with_spaces_and_dashes_are_the_code() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let (accounts, _clock) = db.accounts(&[]);
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(config_slow());
    runner
        .run(&(separators(6), 0..6usize), |(separators, wrong_at)| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let email = Email::parse(&format!("code{n}@example.org")).unwrap();
            let user = accounts.create_user(NewUser::new().email(email)).unwrap();
            let token = || accounts.email_token(user.id).unwrap().expect("the email's token");

            // a wrong digit, typed the same way, is refused
            let code = accounts.generate_password(&token()).unwrap();
            let mut wrong: Vec<char> = code.as_str().chars().collect();
            wrong[wrong_at] = if wrong[wrong_at] == '9' { '0' } else { char::from(wrong[wrong_at] as u8 + 1) };
            let wrong: String = wrong.into_iter().collect();
            prop_assert_eq!(accounts.check_password(&token(), &spaced(&wrong, &separators)).unwrap(), false);

            // a new code (which also ends the backoff the failure opened), typed with separators
            let code = accounts.generate_password(&token()).unwrap();
            let typed = spaced(code.as_str(), &separators);
            prop_assert!(accounts.check_password(&token(), &typed).unwrap(), "{:?} was refused", typed);
            prop_assert!(token().state.verified);
            Ok(())
        })
        .unwrap();
}
