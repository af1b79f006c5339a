//! Sample pages with realistic data: every view rendered signed in and out, forms re-shown with
//! their messages, long addresses, the error pages. `tests/views.rs` checks their HTML,
//! `tests/pages.rs` checks every one in headless Chromium; `write_pages` puts them on disk for
//! looking at by hand. A module of the test binaries, not a test binary itself (a folder with a
//! `mod.rs`).

use std::path::{Path, PathBuf};

use askama::Template;
use flex_user::web::views::{
    AccountView, ActivityView, AddressView, Chrome, CodeRequestView, CodeVerifyView, DeleteView, ErrorView, EventRow,
    FormErrors, HomeView, ResetNewView, ResetRequestView, ResetVerifyView, SessionRow, SessionsView, SignInView,
    SignUpView, VerifyView, When,
};

/// An address long enough to test wrapping on a 390 px wide screen.
pub const LONG_EMAIL: &str = "maximilian.alexander-featherstonehaugh@subdomain.example-long-domain.com";
/// A valid username of one unbroken run (usernames may have up to 150 characters).
pub const LONG_USERNAME: &str = "Maximilian_Alexander_Featherstonehaugh_the_third_of_Wessex";

/// The CSRF token written into every sample form.
pub const TOKEN: &str = "tok-123_abc";

/// A signed-out visitor.
pub fn out() -> Chrome {
    Chrome::signed_out(TOKEN)
}

/// A visitor signed in as `alice`.
pub fn signed_in() -> Chrome {
    Chrome::signed_in(TOKEN, "alice")
}

/// `alice`'s account page: a username, an unverified email and phone, a password.
pub fn account(chrome: Chrome) -> AccountView {
    AccountView {
        chrome,
        username: Some("alice".into()),
        email: Some(AddressView { address: "alice@example.com".into(), verified: false }),
        phone: Some(AddressView { address: "+447700900123".into(), verified: false }),
        has_usable_password: true,
        form_username: "alice".into(),
        form_email: "alice@example.com".into(),
        form_phone: "+447700900123".into(),
        identifier_errors: FormErrors::default(),
        password_errors: FormErrors::default(),
        notice: None,
    }
}

/// The verify page for `alice@example.com` on `channel` ("email" or "phone").
pub fn verify(chrome: Chrome, channel: &'static str) -> VerifyView {
    VerifyView { chrome, channel, address: "alice@example.com".into(), errors: FormErrors::default(), notice: None }
}

/// `alice`'s delete page: a username, an email, a phone, a password, three sessions.
pub fn delete(chrome: Chrome) -> DeleteView {
    DeleteView {
        chrome,
        identifiers: vec!["alice".into(), "alice@example.com".into(), "+447700900123".into()],
        sessions: 3,
        has_usable_password: true,
        confirm: String::new(),
        errors: FormErrors::default(),
    }
}

fn when(secs: i64) -> When {
    When::at(chrono::DateTime::from_timestamp(1_796_000_000 + secs, 0).unwrap())
}

/// `alice`'s sessions: this browser, a phone, and an old one not used since public ids.
pub fn sessions(chrome: Chrome) -> SessionsView {
    let session = |public_id: &str, browser: &str, ip: &str, current: bool| SessionRow {
        public_id: public_id.into(),
        began: when(0),
        last_used: Some(when(3600)),
        ip: ip.into(),
        browser: browser.into(),
        current,
    };
    SessionsView {
        chrome,
        sessions: vec![
            session("aaaaaaaaaaaaaaaaaaaaaaaa", "Firefox on Linux", "203.0.113.7", true),
            session("bbbbbbbbbbbbbbbbbbbbbbbb", "Chrome on Android", "2001:db8:85a3:1234:5678:8a2e:370:7334", false),
            SessionRow { last_used: None, ..session("", "Unknown browser", "Unknown", false) },
        ],
    }
}

/// `alice`'s activity: a failed sign-in count, a sign-in, a change.
pub fn activity(chrome: Chrome) -> ActivityView {
    let event = |what: &str, warning: bool| EventRow {
        what: what.into(),
        when: when(60),
        ip: "203.0.113.7".into(),
        browser: "Safari on iPhone".into(),
        warning,
    };
    ActivityView {
        chrome,
        events: vec![
            event("3 failed sign-in attempts within the hour", true),
            event("Signed in with a password", false),
            event("Changed the email address", false),
        ],
        page: 1,
        newer: None,
        older: None,
    }
}

/// Every page, rendered with the given chrome.
pub fn all_pages(chrome: impl Fn() -> Chrome) -> Vec<(&'static str, String)> {
    vec![
        ("home", HomeView { chrome: chrome() }.render().unwrap()),
        (
            "sign_up",
            SignUpView {
                chrome: chrome(),
                username: String::new(),
                email: String::new(),
                phone: String::new(),
                errors: FormErrors::default(),
            }
            .render()
            .unwrap(),
        ),
        (
            "sign_in",
            SignInView {
                chrome: chrome(),
                identifier: String::new(),
                next: "/account".into(),
                errors: FormErrors::default(),
                passkeys: true,
            }
            .render()
            .unwrap(),
        ),
        ("account", account(chrome()).render().unwrap()),
        ("sessions", sessions(chrome()).render().unwrap()),
        ("activity", activity(chrome()).render().unwrap()),
        ("verify_email", verify(chrome(), "email").render().unwrap()),
        ("verify_phone", verify(chrome(), "phone").render().unwrap()),
        (
            "reset_request",
            ResetRequestView { chrome: chrome(), identifier: String::new(), errors: FormErrors::default() }
                .render()
                .unwrap(),
        ),
        ("reset_verify", ResetVerifyView { chrome: chrome(), errors: FormErrors::default() }.render().unwrap()),
        ("reset_new", ResetNewView { chrome: chrome(), errors: FormErrors::default() }.render().unwrap()),
        (
            "sign_in_code",
            CodeRequestView {
                chrome: chrome(),
                identifier: String::new(),
                next: "/account".into(),
                errors: FormErrors::default(),
            }
            .render()
            .unwrap(),
        ),
        ("sign_in_code_verify", CodeVerifyView { chrome: chrome(), errors: FormErrors::default() }.render().unwrap()),
        ("account_delete", delete(chrome()).render().unwrap()),
        ("error_404", ErrorView::not_found(Some(chrome())).render().unwrap()),
        ("error_429", ErrorView::too_many_requests(Some(chrome()), 30).render().unwrap()),
    ]
}

/// Every sample page as the server would send it, named for files (`[a-z0-9_]+`): each page
/// signed out and signed in (with a long display name), re-shown forms with their messages,
/// long addresses, and the 403, 404, 413, 429 and 500 pages.
pub fn pages() -> Vec<(String, String)> {
    let long = || Chrome::signed_in(TOKEN, LONG_EMAIL);
    let mut pages: Vec<(String, String)> = all_pages(out).into_iter().map(|(n, h)| (n.to_string(), h)).collect();
    pages.extend(all_pages(long).into_iter().map(|(n, h)| (format!("{n}_in"), h)));
    let mut more: Vec<(&str, String)> = Vec::new();

    let mut acct = account(long());
    acct.username = None;
    acct.email = Some(AddressView { address: LONG_EMAIL.into(), verified: true });
    acct.form_username = String::new();
    acct.form_email = LONG_EMAIL.into();
    acct.identifier_errors.general("Your current password is needed to change your email or phone.");
    acct.identifier_errors.field("phone", "Enter a valid phone number, with its country code.");
    acct.identifier_errors.field("current_password", "That is not your current password.");
    acct.password_errors.field("new_password", "This password is too similar to the email address.");
    acct.notice = Some("We sent a code to +447700900123.".into());
    more.push(("account_errors", acct.render().unwrap()));

    let mut acct = account(Chrome::signed_in(TOKEN, LONG_USERNAME));
    acct.username = Some(LONG_USERNAME.into());
    acct.email = Some(AddressView { address: LONG_EMAIL.into(), verified: false });
    acct.form_username = LONG_USERNAME.into();
    acct.form_email = LONG_EMAIL.into();
    acct.notice = Some(format!("We sent a code to {LONG_EMAIL}."));
    more.push(("account_long", acct.render().unwrap()));

    let mut nopw = account(signed_in());
    nopw.has_usable_password = false;
    nopw.email.as_mut().unwrap().verified = true;
    nopw.identifier_errors.field("current_password", "Enter your current password.");
    nopw.password_errors.general("This account has no password yet.");
    more.push(("account_nopassword", nopw.render().unwrap()));

    let sign_up = SignUpView {
        chrome: out(),
        username: "alice".into(),
        email: format!("{LONG_EMAIL}@"),
        phone: "+44 7700".into(),
        errors: FormErrors::default()
            .with_general("Give at least one of username, email or phone.")
            .with_field("username", "A user with that username already exists.")
            .with_field("email", "Enter a valid email address.")
            .with_field("phone", "Enter a valid phone number, with its country code.")
            .with_field("password", "This password is too common."),
    };
    more.push(("sign_up_errors", sign_up.render().unwrap()));
    let sign_in = SignInView {
        chrome: out(),
        identifier: LONG_EMAIL.into(),
        next: "/account".into(),
        errors: FormErrors::default().with_general("That username, email or phone and password do not match."),
        passkeys: false,
    };
    more.push(("sign_in_errors", sign_in.render().unwrap()));

    let mut v = verify(long(), "phone");
    v.address = "+447700900123".into();
    v.notice = Some("We sent a new code.".into());
    v.errors.field("code", "That code is wrong or has expired.");
    more.push(("verify_errors", v.render().unwrap()));
    let mut v = verify(long(), "email");
    v.address = LONG_EMAIL.into();
    v.notice = Some(format!("We sent a code to {LONG_EMAIL}."));
    more.push(("verify_long", v.render().unwrap()));

    let reset = ResetRequestView {
        chrome: out(),
        identifier: LONG_EMAIL.into(),
        errors: FormErrors::default().with_field("identifier", "Enter your username, email or phone."),
    };
    more.push(("reset_request_errors", reset.render().unwrap()));
    let errors = FormErrors::default().with_field("code", "That code is wrong or has expired.");
    more.push(("reset_verify_errors", ResetVerifyView { chrome: out(), errors }.render().unwrap()));
    let errors = FormErrors::default()
        .with_general("This code has expired. Start again to get a new one.")
        .with_field("new_password", "This password is entirely numeric.");
    more.push(("reset_new_errors", ResetNewView { chrome: out(), errors }.render().unwrap()));

    let code = CodeRequestView {
        chrome: out(),
        identifier: LONG_EMAIL.into(),
        next: String::new(),
        errors: FormErrors::default().with_field("identifier", "Enter your username, email address or phone number."),
    };
    more.push(("sign_in_code_errors", code.render().unwrap()));
    let errors = FormErrors::default().with_field("code", "Too many wrong codes. Try again in 4 seconds.");
    more.push(("sign_in_code_verify_errors", CodeVerifyView { chrome: out(), errors }.render().unwrap()));
    let mut del = delete(Chrome::signed_in(TOKEN, LONG_USERNAME));
    del.identifiers = vec![LONG_USERNAME.into(), LONG_EMAIL.into()];
    del.sessions = 1;
    del.confirm = "yes".into();
    del.errors.field("current_password", "That is not your current password.");
    del.errors.field("confirm", "Type the word delete to confirm.");
    more.push(("account_delete_errors", del.render().unwrap()));
    let mut del = delete(long());
    del.has_usable_password = false;
    del.identifiers = vec!["+447700900123".into()];
    del.errors.general(
        "Your account has no password, so deleting it needs a recent sign-in: sign in again with a code, then delete it within 10 minutes.",
    );
    more.push(("account_delete_nopassword", del.render().unwrap()));

    let mut one = sessions(Chrome::signed_in(TOKEN, LONG_USERNAME));
    one.sessions.truncate(1);
    one.sessions[0].browser = "Internet Explorer on Windows Phone OS".into();
    more.push(("sessions_one", one.render().unwrap()));
    let mut many = activity(long());
    (many.page, many.newer, many.older) = (2, Some(1), Some(3));
    many.events[0].ip = "2001:db8:85a3:1234:5678:8a2e:370:7334".into();
    more.push(("activity_more", many.render().unwrap()));
    let mut none = activity(long());
    none.events.clear();
    more.push(("activity_empty", none.render().unwrap()));

    more.push(("error_403", ErrorView::forbidden(Some(long())).render().unwrap()));
    more.push(("error_403_bare", ErrorView::forbidden(None).render().unwrap()));
    more.push(("error_404_bare", ErrorView::not_found(None).render().unwrap()));
    more.push(("error_413", ErrorView::payload_too_large(None).render().unwrap()));
    more.push(("error_429_long", ErrorView::too_many_requests(Some(out()), 3600).render().unwrap()));
    more.push(("error_500", ErrorView::internal(None).render().unwrap()));
    more.push(("error_500_in", ErrorView::internal(Some(long())).render().unwrap()));
    more.extend(two_factor_pages());
    pages.extend(more.into_iter().map(|(n, h)| (n.to_string(), h)));
    pages
}

/// The second-factor pages: the overview off, on, re-shown and with an unusable app; the setup
/// page with its QR code; recovery codes shown once; the second sign-in step.
fn two_factor_pages() -> Vec<(&'static str, String)> {
    use flex_user::web::views::{
        PasskeyRow, PasskeysPart, RecoveryCodesView, SecondStepView, TotpSetupView, TwoFactorView, When, qr_svg,
    };
    let at = |s: i64| When::at(chrono::DateTime::from_timestamp(1_796_000_000 + s, 0).unwrap());
    let passkey = |id: &str, name: &str, used: bool| PasskeyRow {
        public_id: id.into(),
        name: name.into(),
        added: at(0),
        last_used: used.then(|| at(3600)),
    };
    let overview = |totp_on: bool| TwoFactorView {
        chrome: signed_in(),
        totp_on,
        totp_usable: true,
        recovery_left: if totp_on { 9 } else { 0 },
        has_usable_password: true,
        totp_errors: FormErrors::default(),
        recovery_errors: FormErrors::default(),
        notice: None,
        has_factor: totp_on,
        passkeys: PasskeysPart {
            offered: true,
            list: if totp_on {
                vec![passkey("pk1", "Laptop", true), passkey("pk2", &format!("Security key of {LONG_EMAIL}"), false)]
            } else {
                Vec::new()
            },
            ..PasskeysPart::default()
        },
    };
    let mut errors = overview(true);
    errors.passkeys.remove_errors = Some((
        "pk1".into(),
        FormErrors::default().with_field("current_password", "That is not your current password."),
    ));
    errors.passkeys.add_errors = FormErrors::default().with_field("name", "Give the passkey a name.");
    let mut not_offered = overview(false);
    not_offered.passkeys.offered = false;
    errors.totp_usable = false;
    errors.totp_errors.field("current_password", "That is not your current password.");
    errors.recovery_errors.field("current_password", "Enter your current password.");
    let mut off_errors = overview(false);
    off_errors.totp_errors.field("current_password", "That is not your current password.");
    off_errors.has_usable_password = false;
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let uri = format!("otpauth://totp/flex-user:{LONG_EMAIL}?secret={secret}&issuer=flex-user");
    let setup = |errors: FormErrors| TotpSetupView {
        chrome: Chrome::signed_in(TOKEN, LONG_EMAIL),
        site_name: "flex-user".into(),
        secret: secret.into(),
        qr_svg: qr_svg(&uri).unwrap(),
        uri: uri.clone(),
        errors,
    };
    let codes: Vec<String> = ["k7pq2-xm4rt", "a1b2c-d3e4f", "zz9yx-0w8vt", "mnpq3-r4stv", "0h5jk-m6npq"]
        .iter()
        .chain(["q7rst-v8wxy", "z9012-34567", "89abc-defgh", "jkmnp-qrstv", "wxyz0-12345"].iter())
        .map(|c| c.to_string())
        .collect();
    let second = |errors: FormErrors, remember_days: u32| SecondStepView {
        chrome: out(),
        next: "/account".into(),
        remember_days,
        errors,
        passkey: remember_days > 0,
        app: remember_days != 30,
    };
    vec![
        ("two_factor_off", overview(false).render().unwrap()),
        ("two_factor_on", overview(true).render().unwrap()),
        ("two_factor_errors", errors.render().unwrap()),
        ("two_factor_off_errors", off_errors.render().unwrap()),
        ("two_factor_no_passkeys", not_offered.render().unwrap()),
        ("two_factor_totp", setup(FormErrors::default()).render().unwrap()),
        (
            "two_factor_totp_wrong",
            setup(FormErrors::default().with_field("code", "That code is not right.")).render().unwrap(),
        ),
        (
            "two_factor_recovery_new",
            RecoveryCodesView { chrome: signed_in(), codes, left: 10, totp_on: true }.render().unwrap(),
        ),
        (
            "two_factor_recovery_count",
            RecoveryCodesView { chrome: signed_in(), codes: Vec::new(), left: 1, totp_on: true }.render().unwrap(),
        ),
        ("sign_in_two_factor", second(FormErrors::default(), 30).render().unwrap()),
        (
            "sign_in_two_factor_wrong",
            second(FormErrors::default().with_field("code", "That code is not right."), 0).render().unwrap(),
        ),
        (
            "sign_in_two_factor_throttled",
            second(FormErrors::default().with_general("Too many wrong codes. Try again in 8 seconds."), 1)
                .render()
                .unwrap(),
        ),
    ]
}

/// Writes [`pages`] to `dir` as `NAME.html`, with the stylesheet (the one the server sends) in
/// `dir/static/` and links to `/static/…` made relative, so the files open from disk.
/// Returns the paths of the pages.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join("static"))?;
    std::fs::write(dir.join("static/style.css"), include_str!("../../../static/style.css"))?;
    std::fs::write(dir.join("static/passkey.js"), include_str!("../../../static/passkey.js"))?;
    let mut written = Vec::new();
    for (name, html) in pages() {
        let path = dir.join(format!("{name}.html"));
        std::fs::write(&path, relative_static_links(&html))?;
        written.push(path);
    }
    Ok(written)
}

/// `href="/static/…"` and `src="/static/…"` made relative (`static/…`).
fn relative_static_links(html: &str) -> String {
    html.replace(r#"href="/static/"#, r#"href="static/"#).replace(r#"src="/static/"#, r#"src="static/"#)
}
