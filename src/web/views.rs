//! One askama view struct per page. Handlers fill a view and answer it with [`html`] (any
//! status) or, for a plain 200, return it directly (every view is an actix `Responder`).
//!
//! Templates live in `templates/` and all extend `base.html`; HTML escaping is on, so every
//! value here is plain text. No template holds a script or an inline style (the CSP forbids
//! both), and no template ever writes a password back into a form.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use askama::Template;
use askama_web::WebTemplate;

/// What every page needs for its header and forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chrome {
    /// The session's CSRF token: written into every form as the hidden `csrf_token` input.
    pub csrf_token: String,
    /// The signed-in user's display name (username, else email, else phone); `None` when signed out.
    pub signed_in_as: Option<String>,
}

impl Chrome {
    pub fn signed_out(csrf_token: impl Into<String>) -> Self {
        Chrome { csrf_token: csrf_token.into(), signed_in_as: None }
    }

    pub fn signed_in(csrf_token: impl Into<String>, display_name: impl Into<String>) -> Self {
        Chrome { csrf_token: csrf_token.into(), signed_in_as: Some(display_name.into()) }
    }

    /// The display name when signed in.
    pub fn display_name(&self) -> Option<&str> {
        self.signed_in_as.as_deref()
    }
}

/// Field messages and form-wide messages for a re-shown form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormErrors {
    fields: Vec<(&'static str, String)>,
    generals: Vec<String>,
}

impl FormErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A message for the input named `name` (its form field name, e.g. `"email"`). A second
    /// message for the same field is appended to the first.
    pub fn field(&mut self, name: &'static str, msg: impl Into<String>) {
        let msg = msg.into();
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(' ');
                existing.push_str(&msg);
            }
            None => self.fields.push((name, msg)),
        }
    }

    /// A message about the whole form, shown in an alert box at its top.
    pub fn general(&mut self, msg: impl Into<String>) {
        self.generals.push(msg.into());
    }

    /// Builder form of [`FormErrors::field`].
    pub fn with_field(mut self, name: &'static str, msg: impl Into<String>) -> Self {
        self.field(name, msg);
        self
    }

    /// Builder form of [`FormErrors::general`].
    pub fn with_general(mut self, msg: impl Into<String>) -> Self {
        self.general(msg);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, m)| m.as_str())
    }

    pub fn generals(&self) -> &[String] {
        &self.generals
    }

    /// Field messages in the order they were added.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fields.iter().map(|(n, m)| (*n, m.as_str()))
    }

    pub fn has_field_errors(&self) -> bool {
        !self.fields.is_empty()
    }

    /// The lines of the alert box at the top of the form: the general messages, then a pointer
    /// to the fields marked below.
    pub fn alert_lines(&self) -> Vec<String> {
        self.alert_lines_hiding(&[])
    }

    /// Like [`FormErrors::alert_lines`] for a form that does not show the inputs named in
    /// `hidden`: their messages go into the alert box, since there is no field to put them by.
    pub fn alert_lines_hiding(&self, hidden: &[&str]) -> Vec<String> {
        let mut lines = self.generals.clone();
        let mut marked = 0;
        for (name, msg) in &self.fields {
            if hidden.contains(name) {
                lines.push(msg.clone());
            } else {
                marked += 1;
            }
        }
        match marked {
            0 => {}
            1 => lines.push("Please correct the field marked below.".into()),
            _ => lines.push("Please correct the fields marked below.".into()),
        }
        lines
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.generals.is_empty()
    }
}

/// `GET /`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "home.html")]
pub struct HomeView {
    pub chrome: Chrome,
}

/// `GET|POST /sign-up`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "sign_up.html")]
pub struct SignUpView {
    pub chrome: Chrome,
    pub username: String,
    pub email: String,
    pub phone: String,
    pub errors: FormErrors,
}

/// `GET|POST /sign-in`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "sign_in.html")]
pub struct SignInView {
    pub chrome: Chrome,
    pub identifier: String,
    /// Where to go after signing in (the hidden `next` input); empty for the default.
    pub next: String,
    pub errors: FormErrors,
}

/// An email address or phone number of the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressView {
    pub address: String,
    pub verified: bool,
}

/// `GET|POST /account` and the re-shown `POST /account/password`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "account.html")]
pub struct AccountView {
    pub chrome: Chrome,
    pub username: Option<String>,
    pub email: Option<AddressView>,
    pub phone: Option<AddressView>,
    pub has_usable_password: bool,
    /// The identifiers form (`POST /account`): the stored values, or the typed ones when re-shown.
    pub form_username: String,
    pub form_email: String,
    pub form_phone: String,
    pub identifier_errors: FormErrors,
    /// The change-password form (`POST /account/password`).
    pub password_errors: FormErrors,
    /// A status line at the top of the page, e.g. "We sent a code to …".
    pub notice: Option<String>,
}

impl AccountView {
    /// The alert box of the identifiers form (without a usable password there is no
    /// `current_password` input, so a message for it is shown in the box).
    pub fn identifier_alert_lines(&self) -> Vec<String> {
        if self.has_usable_password {
            self.identifier_errors.alert_lines()
        } else {
            self.identifier_errors.alert_lines_hiding(&["current_password"])
        }
    }

    /// The alert box of the password section (without a usable password it has no form, so
    /// every message is shown in the box).
    pub fn password_alert_lines(&self) -> Vec<String> {
        if self.has_usable_password {
            self.password_errors.alert_lines()
        } else {
            self.password_errors.alert_lines_hiding(&["current_password", "new_password"])
        }
    }
}

/// `GET|POST /verify/{channel}`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "verify.html")]
pub struct VerifyView {
    pub chrome: Chrome,
    /// `"email"` or `"phone"`: also the path segment of the form actions.
    pub channel: &'static str,
    /// Where the code was sent.
    pub address: String,
    pub errors: FormErrors,
    pub notice: Option<String>,
}

impl VerifyView {
    /// "email address" or "phone number", for headings and sentences.
    pub fn channel_noun(&self) -> &'static str {
        if self.channel == "phone" { "phone number" } else { "email address" }
    }
}

/// `GET|POST /password-reset`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "reset_request.html")]
pub struct ResetRequestView {
    pub chrome: Chrome,
    pub identifier: String,
    pub errors: FormErrors,
}

/// `GET|POST /password-reset/verify`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "reset_verify.html")]
pub struct ResetVerifyView {
    pub chrome: Chrome,
    pub errors: FormErrors,
}

/// `GET|POST /password-reset/new`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "reset_new.html")]
pub struct ResetNewView {
    pub chrome: Chrome,
    pub errors: FormErrors,
}

/// 403, 404, 413, 429, 500. `chrome` may be None when the page is made outside a handler (no
/// session known); then the header shows no sign-in state and no sign-out button.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorView {
    pub chrome: Option<Chrome>,
    pub status: u16,
    pub title: String,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ErrorView {
    pub fn new(chrome: Option<Chrome>, status: u16, title: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorView { chrome, status, title: title.into(), message: message.into(), retry_after_secs: None }
    }

    /// 403: a POST without the right CSRF token.
    pub fn forbidden(chrome: Option<Chrome>) -> Self {
        Self::new(
            chrome,
            403,
            "This form has expired",
            "The form was old or did not come from this site, so nothing was changed. \
             Go back, reload the page and try again.",
        )
    }

    /// 404.
    pub fn not_found(chrome: Option<Chrome>) -> Self {
        Self::new(chrome, 404, "Page not found", "There is no page at this address. Check it for typing mistakes.")
    }

    /// 413: a request body over the limit.
    pub fn payload_too_large(chrome: Option<Chrome>) -> Self {
        Self::new(chrome, 413, "Too much data", "What was sent was too large, so nothing was changed.")
    }

    /// 429, with the wait in seconds (also sent as `Retry-After` by [`ErrorView::response`]).
    pub fn too_many_requests(chrome: Option<Chrome>, retry_after_secs: u64) -> Self {
        ErrorView {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(chrome, 429, "Too many attempts", "To keep accounts safe, this has to wait a little.")
        }
    }

    /// 500: never says anything about the internals.
    pub fn internal(chrome: Option<Chrome>) -> Self {
        Self::new(
            chrome,
            500,
            "Something went wrong",
            "The server could not finish this request. Please try again in a moment.",
        )
    }

    /// "Try again in N seconds." (or minutes for long waits), when a wait is known.
    pub fn retry_text(&self) -> Option<String> {
        self.retry_after_secs.map(|s| match s {
            0 | 1 => "Try again in 1 second.".to_string(),
            s if s < 120 => format!("Try again in {s} seconds."),
            s => format!("Try again in {s} seconds (about {} minutes).", s.div_ceil(60)),
        })
    }

    /// The page with its own status, and a `Retry-After` header when `retry_after_secs` is set.
    pub fn response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = html(status, self);
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut().insert(RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// Renders `view` as a `text/html` response with `status`. A template that fails to render
/// (it cannot with these views, but never panic) gives a bare 500.
pub fn html<T: Template>(status: StatusCode, view: &T) -> HttpResponse {
    match view.render() {
        Ok(body) => HttpResponse::build(status).insert_header((CONTENT_TYPE, "text/html; charset=utf-8")).body(body),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            HttpResponse::InternalServerError()
                .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body("Internal Server Error")
        }
    }
}

/// The header and forms of every page reach the chrome through this.
trait Page {
    fn page_chrome(&self) -> Option<&Chrome>;
}

macro_rules! page_with_chrome {
    ($($t:ty),* $(,)?) => {$(
        impl Page for $t {
            fn page_chrome(&self) -> Option<&Chrome> {
                Some(&self.chrome)
            }
        }
    )*};
}

page_with_chrome!(
    HomeView,
    SignUpView,
    SignInView,
    AccountView,
    VerifyView,
    ResetRequestView,
    ResetVerifyView,
    ResetNewView
);

impl Page for ErrorView {
    fn page_chrome(&self) -> Option<&Chrome> {
        self.chrome.as_ref()
    }
}

/// Sample pages with realistic data, for the unit tests below, for `tests/pages.rs` (which
/// checks every one in headless Chromium) and for looking at by hand. Not part of the API.
#[doc(hidden)]
pub mod samples {
    use std::path::{Path, PathBuf};

    use super::*;

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
                }
                .render()
                .unwrap(),
            ),
            ("account", account(chrome()).render().unwrap()),
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

        more.push(("error_403", ErrorView::forbidden(Some(long())).render().unwrap()));
        more.push(("error_403_bare", ErrorView::forbidden(None).render().unwrap()));
        more.push(("error_404_bare", ErrorView::not_found(None).render().unwrap()));
        more.push(("error_413", ErrorView::payload_too_large(None).render().unwrap()));
        more.push(("error_429_long", ErrorView::too_many_requests(Some(out()), 3600).render().unwrap()));
        more.push(("error_500", ErrorView::internal(None).render().unwrap()));
        more.push(("error_500_in", ErrorView::internal(Some(long())).render().unwrap()));
        pages.extend(more.into_iter().map(|(n, h)| (n.to_string(), h)));
        pages
    }

    /// Writes [`pages`] to `dir` as `NAME.html`, with the stylesheet (the one the server sends) in
    /// `dir/static/` and links to `/static/…` made relative, so the files open from disk.
    /// Returns the paths of the pages.
    pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir.join("static"))?;
        std::fs::write(dir.join("static/style.css"), include_str!("../../static/style.css"))?;
        let mut written = Vec::new();
        for (name, html) in pages() {
            let path = dir.join(format!("{name}.html"));
            std::fs::write(&path, relative_static_links(&html))?;
            written.push(path);
        }
        Ok(written)
    }

    /// `href="/static/…"` and `src="/static/…"` made relative (`static/…`).
    pub fn relative_static_links(html: &str) -> String {
        html.replace(r#"href="/static/"#, r#"href="static/"#).replace(r#"src="/static/"#, r#"src="static/"#)
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{TOKEN, account, all_pages, out, signed_in, verify};
    use super::*;

    /// The opening tags `<name …>` in `html`.
    fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
        let open = format!("<{name}");
        let mut found = Vec::new();
        let mut rest = html;
        while let Some(i) = rest.find(&open) {
            let after = &rest[i + open.len()..];
            if after.starts_with(|c: char| c.is_ascii_whitespace() || c == '>') {
                let end = after.find('>').expect("unclosed tag");
                found.push(&rest[i..i + open.len() + end + 1]);
            }
            rest = after;
        }
        found
    }

    /// The value of attribute `name` in one opening tag; `Some("")` for a bare attribute.
    fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let with_value = format!(" {name}=\"");
        if let Some(i) = tag.find(&with_value) {
            let v = &tag[i + with_value.len()..];
            return Some(&v[..v.find('"').unwrap()]);
        }
        let bare = format!(" {name}");
        tag.match_indices(&bare).any(|(i, _)| tag[i + bare.len()..].starts_with([' ', '>'])).then_some("")
    }

    fn input<'a>(html: &'a str, id: &str) -> &'a str {
        tags(html, "input")
            .into_iter()
            .find(|t| attr(t, "id") == Some(id))
            .unwrap_or_else(|| panic!("no input with id {id} in\n{html}"))
    }

    /// The `<form …>…</form>` blocks, with their opening tag.
    fn forms(html: &str) -> Vec<&str> {
        html.match_indices("<form").map(|(i, _)| &html[i..i + html[i..].find("</form>").unwrap()]).collect()
    }

    #[test]
    fn every_form_posts_and_carries_the_csrf_token() {
        for pages in [all_pages(out), all_pages(signed_in)] {
            for (name, html) in pages {
                for form in forms(&html) {
                    let open = tags(form, "form")[0];
                    assert_eq!(attr(open, "method"), Some("post"), "{name}: {open}");
                    assert!(
                        form.contains(&format!(r#"<input type="hidden" name="csrf_token" value="{TOKEN}">"#)),
                        "{name}: a form without the csrf token: {form}"
                    );
                }
            }
        }
    }

    #[test]
    fn signed_in_pages_have_a_sign_out_button_and_signed_out_pages_do_not() {
        for (name, html) in all_pages(signed_in) {
            let sign_out = forms(&html).into_iter().find(|f| f.contains(r#"action="/sign-out""#));
            let sign_out = sign_out.unwrap_or_else(|| panic!("{name}: no sign-out form"));
            assert!(sign_out.contains(r#"<button type="submit""#), "{name}");
            assert!(html.contains("alice"), "{name}: the display name is missing");
            assert!(html.contains(r#"href="/account""#), "{name}");
        }
        for (name, html) in all_pages(out) {
            assert!(!html.contains("/sign-out"), "{name}");
            assert!(html.contains(r#"href="/sign-in""#) && html.contains(r#"href="/sign-up""#), "{name}");
        }
        let home = HomeView { chrome: signed_in() }.render().unwrap();
        assert!(home.contains("Signed in as <strong class=\"identity\">alice</strong>"), "{home}");
    }

    #[test]
    fn every_page_is_a_complete_csp_friendly_document() {
        for (name, html) in all_pages(out).into_iter().chain(all_pages(signed_in)) {
            assert!(html.starts_with("<!doctype html>"), "{name}");
            assert!(html.contains(r#"<html lang="en">"#), "{name}");
            assert!(html.contains(r#"<meta charset="utf-8">"#), "{name}");
            assert!(html.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#), "{name}");
            assert!(html.contains(r#"<link rel="stylesheet" href="/static/style.css">"#), "{name}");
            assert!(html.contains(r#"<main id="main""#), "{name}");
            assert!(html.contains(r##"href="#main""##), "{name}: no skip link");
            assert!(html.contains(r#"<a class="brand" href="/">"#), "{name}");
            let lower = html.to_ascii_lowercase();
            for banned in ["<script", "style=", "<style", "javascript:", " onclick", " onsubmit", " onload"] {
                assert!(!lower.contains(banned), "{name}: has {banned}");
            }
            assert_eq!(tags(&html, "h1").len(), 1, "{name}: one h1");
        }
    }

    #[test]
    fn every_input_has_a_label_and_ids_are_unique() {
        for (name, html) in all_pages(out).into_iter().chain(all_pages(signed_in)) {
            let mut ids = Vec::new();
            for tag in tags(&html, "input") {
                if attr(tag, "type") == Some("hidden") {
                    continue;
                }
                let id = attr(tag, "id").unwrap_or_else(|| panic!("{name}: input without id: {tag}"));
                assert!(html.contains(&format!(r#"<label for="{id}">"#)), "{name}: no label for {id}");
                assert!(attr(tag, "autocomplete").is_some(), "{name}: no autocomplete hint on {tag}");
                ids.push(id);
            }
            let all_ids: Vec<&str> = html.match_indices(" id=\"").map(|(i, _)| &html[i + 5..]).collect();
            let all_ids: Vec<&str> = all_ids.iter().map(|s| &s[..s.find('"').unwrap()]).collect();
            let mut sorted = all_ids.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), all_ids.len(), "{name}: duplicate ids in {all_ids:?}");
        }
    }

    #[test]
    fn sign_up_form_fields_and_hints() {
        let html = SignUpView {
            chrome: out(),
            username: "bob".into(),
            email: "bob@example.com".into(),
            phone: "+15555550100".into(),
            errors: FormErrors::default(),
        }
        .render()
        .unwrap();
        assert_eq!(forms(&html).iter().filter(|f| f.contains(r#"action="/sign-up""#)).count(), 1);
        for (id, ty, ac, value) in [
            ("username", "text", "username", "bob"),
            ("email", "email", "email", "bob@example.com"),
            ("phone", "tel", "tel", "+15555550100"),
        ] {
            let tag = input(&html, id);
            assert_eq!(attr(tag, "name"), Some(id));
            assert_eq!(attr(tag, "type"), Some(ty), "{tag}");
            assert_eq!(attr(tag, "autocomplete"), Some(ac), "{tag}");
            assert_eq!(attr(tag, "value"), Some(value), "{tag}");
            assert_eq!(attr(tag, "required"), None, "optional fields are not required: {tag}");
        }
        assert!(html.contains("Give at least one of username, email or phone"));
        let pw = input(&html, "password");
        assert_eq!(attr(pw, "type"), Some("password"));
        assert_eq!(attr(pw, "autocomplete"), Some("new-password"));
        assert_eq!(attr(pw, "required"), Some(""));
        assert_eq!(attr(pw, "minlength"), Some("8"));
        assert_eq!(attr(pw, "value"), None);
        assert!(html.contains("At least 8 characters, not all digits, not a common password"));
        assert!(html.contains(r#"href="/sign-in""#));
    }

    #[test]
    fn sign_in_form_fields_and_links() {
        let html = SignInView {
            chrome: out(),
            identifier: "bob@example.com".into(),
            next: "/account?x=1&y=2".into(),
            errors: FormErrors::default().with_general("That username, email or phone and password do not match."),
        }
        .render()
        .unwrap();
        let id = input(&html, "identifier");
        assert_eq!(attr(id, "name"), Some("identifier"));
        assert_eq!(attr(id, "autocomplete"), Some("username"));
        assert_eq!(attr(id, "value"), Some("bob@example.com"));
        assert!(html.contains(r#"<label for="identifier">Username, email or phone</label>"#));
        let pw = input(&html, "password");
        assert_eq!(attr(pw, "autocomplete"), Some("current-password"));
        assert_eq!(attr(pw, "value"), None);
        assert!(html.contains(r#"<input type="hidden" name="next" value="/account?x=1&#38;y=2">"#), "{html}");
        assert!(html.contains(r#"<a href="/password-reset">Forgot your password?</a>"#));
        assert!(html.contains(r#"href="/sign-up""#));
        assert!(html.contains(r#"role="alert""#) && html.contains("do not match."));
    }

    #[test]
    fn account_offers_verification_for_each_unverified_address() {
        let html = account(signed_in()).render().unwrap();
        for channel in ["email", "phone"] {
            assert!(html.contains(&format!(r#"href="/verify/{channel}""#)), "{channel}");
            let send = forms(&html).into_iter().find(|f| f.contains(&format!(r#"action="/verify/{channel}/send""#)));
            let send = send.unwrap_or_else(|| panic!("no send form for {channel}"));
            assert!(send.contains("Send a code"));
        }
        assert_eq!(html.matches("Not verified").count(), 2);
        for (id, ac) in [
            ("acct-username", "username"),
            ("acct-email", "email"),
            ("acct-phone", "tel"),
            ("acct-current-password", "current-password"),
            ("pw-current-password", "current-password"),
            ("pw-new-password", "new-password"),
        ] {
            assert_eq!(attr(input(&html, id), "autocomplete"), Some(ac), "{id}");
        }
        assert_eq!(attr(input(&html, "acct-email"), "value"), Some("alice@example.com"));
        assert_eq!(attr(input(&html, "acct-current-password"), "name"), Some("current_password"));
        assert_eq!(attr(input(&html, "pw-new-password"), "name"), Some("new_password"));
        for id in ["acct-username", "acct-email", "acct-phone", "acct-current-password"] {
            assert_eq!(attr(input(&html, id), "required"), None, "{id}");
        }
        assert!(html.contains("blank to remove"));
        assert!(html.contains(r#"action="/account""#) && html.contains(r#"action="/account/password""#));

        // verified addresses: a badge, no verification controls
        let mut v = account(signed_in());
        v.email.as_mut().unwrap().verified = true;
        v.phone.as_mut().unwrap().verified = true;
        let html = v.render().unwrap();
        assert_eq!(html.matches(">Verified<").count(), 2);
        assert!(!html.contains("/verify/"));

        // missing ones: "Not set", no controls
        let mut v = account(signed_in());
        v.email = None;
        v.phone = None;
        let html = v.render().unwrap();
        assert!(!html.contains("/verify/"));
        assert_eq!(html.matches("Not set").count(), 2);
    }

    #[test]
    fn account_without_a_password_points_to_the_reset() {
        let mut v = account(signed_in());
        v.has_usable_password = false;
        let html = v.render().unwrap();
        assert!(!html.contains(r#"action="/account/password""#));
        assert!(!html.contains("current_password"));
        assert!(html.contains(r#"<a href="/password-reset">Forgot your password?</a>"#));
        assert!(html.contains(r#"action="/account""#));
    }

    #[test]
    fn account_without_a_password_still_shows_every_message() {
        let mut v = account(signed_in());
        v.has_usable_password = false;
        v.identifier_errors.field("current_password", "Enter your current password.");
        v.password_errors.general("This account has no password yet.");
        v.password_errors.field("new_password", "Too short.");
        let html = v.render().unwrap();
        assert!(html.contains("<p>Enter your current password.</p>"), "{html}");
        assert!(html.contains("<p>This account has no password yet.</p>"));
        assert!(html.contains("<p>Too short.</p>"));
        assert!(!html.contains("marked below"));
        assert_eq!(html.matches(r#"role="alert""#).count(), 2);
    }

    #[test]
    fn account_reshown_with_errors_and_notice() {
        let mut v = account(signed_in());
        v.form_email = "typed@example".into();
        v.identifier_errors.field("email", "Enter a valid email address.");
        v.identifier_errors.field("current_password", "Your current password is needed to change your email.");
        v.password_errors.field("new_password", "This password is too common.");
        v.notice = Some("We sent a code to alice@example.com.".into());
        let html = v.render().unwrap();
        assert!(html.contains(r#"role="status""#) && html.contains("We sent a code to alice@example.com."));
        let email = input(&html, "acct-email");
        assert_eq!(attr(email, "value"), Some("typed@example"));
        assert_eq!(attr(email, "aria-invalid"), Some("true"));
        assert_eq!(attr(email, "aria-describedby"), Some("acct-email-error"));
        assert!(html.contains(r#"id="acct-email-error""#));
        let cp = input(&html, "acct-current-password");
        assert_eq!(attr(cp, "aria-describedby"), Some("acct-current-password-hint acct-current-password-error"));
        assert_eq!(attr(input(&html, "pw-current-password"), "aria-invalid"), None);
        assert_eq!(attr(input(&html, "pw-new-password"), "aria-invalid"), Some("true"));
        assert!(html.contains("This password is too common."));
        assert_eq!(html.matches(r#"role="alert""#).count(), 2);
    }

    #[test]
    fn verify_page_code_input_and_resend() {
        for channel in ["email", "phone"] {
            let mut v = verify(signed_in(), channel);
            v.errors.field("code", "That code is wrong or has expired.");
            let html = v.render().unwrap();
            assert!(forms(&html).iter().any(|f| f.contains(&format!(r#"action="/verify/{channel}""#))));
            assert!(forms(&html).iter().any(|f| f.contains(&format!(r#"action="/verify/{channel}/send""#))));
            let code = input(&html, "code");
            assert_eq!(attr(code, "name"), Some("code"));
            assert_eq!(attr(code, "autocomplete"), Some("one-time-code"));
            assert_eq!(attr(code, "inputmode"), Some("numeric"));
            assert_eq!(attr(code, "pattern"), Some("[0-9]*"));
            assert_eq!(attr(code, "aria-invalid"), Some("true"));
            assert!(html.contains(r#"<label for="code">Code</label>"#));
            assert!(html.contains("alice@example.com"));
            assert!(html.contains("That code is wrong or has expired."));
        }
        assert!(verify(out(), "phone").render().unwrap().contains("Verify your phone number"));
    }

    #[test]
    fn password_reset_pages() {
        let html =
            ResetRequestView { chrome: out(), identifier: "x".into(), errors: FormErrors::default() }.render().unwrap();
        assert!(html.contains(r#"action="/password-reset""#));
        assert_eq!(attr(input(&html, "identifier"), "autocomplete"), Some("username"));
        assert_eq!(attr(input(&html, "identifier"), "name"), Some("identifier"));

        let html = ResetVerifyView { chrome: out(), errors: FormErrors::default() }.render().unwrap();
        assert!(html.contains(r#"action="/password-reset/verify""#));
        assert!(html.contains("If an account matches, we sent it a code"));
        let code = input(&html, "code");
        assert_eq!(attr(code, "autocomplete"), Some("one-time-code"));
        assert_eq!(attr(code, "inputmode"), Some("numeric"));

        let html = ResetNewView { chrome: out(), errors: FormErrors::default() }.render().unwrap();
        assert!(html.contains(r#"action="/password-reset/new""#));
        let pw = input(&html, "new_password");
        assert_eq!(attr(pw, "name"), Some("new_password"));
        assert_eq!(attr(pw, "autocomplete"), Some("new-password"));
        assert_eq!(attr(pw, "value"), None);
    }

    #[test]
    fn error_pages() {
        let v = ErrorView::too_many_requests(None, 42);
        let html = v.render().unwrap();
        assert!(html.contains("Try again in 42 seconds."), "{html}");
        assert!(html.contains(r#"href="/""#));
        assert!(!html.contains("/sign-out"));
        let resp = v.response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get(RETRY_AFTER).unwrap(), "42");
        assert_eq!(resp.headers().get(CONTENT_TYPE).unwrap(), "text/html; charset=utf-8");
        assert!(ErrorView::too_many_requests(None, 1).render().unwrap().contains("Try again in 1 second."));

        for (v, code) in [
            (ErrorView::forbidden(None), 403),
            (ErrorView::not_found(Some(signed_in())), 404),
            (ErrorView::payload_too_large(None), 413),
            (ErrorView::internal(None), 500),
        ] {
            let resp = v.response();
            assert_eq!(resp.status().as_u16(), code);
            assert!(resp.headers().get(RETRY_AFTER).is_none());
            let html = v.render().unwrap();
            assert!(html.contains(&v.title) && html.contains(&format!("Error {code}")));
        }
        assert!(ErrorView::not_found(Some(signed_in())).render().unwrap().contains(r#"action="/sign-out""#));
    }

    #[test]
    fn user_values_are_escaped_everywhere() {
        let evil = r#"<b>x</b>"'&"#;
        let escaped = "&#60;b&#62;x&#60;/b&#62;&#34;&#39;&#38;";
        let chrome = || Chrome::signed_in(TOKEN, evil);
        let mut acct = account(chrome());
        acct.username = Some(evil.into());
        acct.email = Some(AddressView { address: evil.into(), verified: false });
        acct.form_username = evil.into();
        acct.notice = Some(evil.into());
        acct.identifier_errors.general(evil);
        acct.identifier_errors.field("username", evil);
        let pages = [
            acct.render().unwrap(),
            SignUpView {
                chrome: chrome(),
                username: evil.into(),
                email: evil.into(),
                phone: evil.into(),
                errors: FormErrors::default().with_field("email", evil),
            }
            .render()
            .unwrap(),
            SignInView { chrome: chrome(), identifier: evil.into(), next: evil.into(), errors: FormErrors::default() }
                .render()
                .unwrap(),
            VerifyView { address: evil.into(), notice: Some(evil.into()), ..verify(chrome(), "email") }
                .render()
                .unwrap(),
            ErrorView::new(Some(chrome()), 500, evil, evil).render().unwrap(),
        ];
        for html in pages {
            assert!(!html.contains("<b>"), "{html}");
            assert!(html.contains(escaped), "{html}");
        }
    }

    #[test]
    fn reshown_forms_show_messages_but_never_a_password() {
        let errors = FormErrors::default()
            .with_general("Give at least one of username, email or phone.")
            .with_field("username", "A user with that username already exists.")
            .with_field("password", "This password is too short.");
        let html =
            SignUpView { chrome: out(), username: "taken".into(), email: String::new(), phone: String::new(), errors }
                .render()
                .unwrap();
        let alert = &html[html.find(r#"role="alert""#).expect("alert")..];
        assert!(alert.contains("Give at least one of username, email or phone."));
        let user = input(&html, "username");
        assert_eq!(attr(user, "aria-invalid"), Some("true"));
        assert_eq!(attr(user, "aria-describedby"), Some("username-hint username-error"));
        assert!(html.contains(r#"id="username-error""#) && html.contains("already exists."));
        let pw = input(&html, "password");
        assert_eq!(attr(pw, "value"), None);
        assert_eq!(attr(pw, "aria-invalid"), Some("true"));
        for (_, page) in all_pages(signed_in) {
            for tag in tags(&page, "input") {
                if attr(tag, "type") == Some("password") {
                    assert_eq!(attr(tag, "value"), None, "{tag}");
                }
            }
        }
    }

    #[test]
    fn form_errors_api() {
        let mut e = FormErrors::default();
        assert!(e.is_empty());
        e.field("email", "One.");
        e.field("email", "Two.");
        e.general("General.");
        assert_eq!(e.get("email"), Some("One. Two."));
        assert_eq!(e.get("phone"), None);
        assert_eq!(e.generals(), ["General.".to_string()]);
        assert_eq!(e.alert_lines(), ["General.", "Please correct the field marked below."]);
        assert_eq!(e.alert_lines_hiding(&["email"]), ["General.", "One. Two."]);
        e.field("phone", "Three.");
        assert_eq!(e.alert_lines().last().unwrap(), "Please correct the fields marked below.");
        assert!(!e.is_empty() && e.has_field_errors());
    }

    /// Writes every sample page to /tmp/views/*.html with the stylesheet in /tmp/views/static/, for
    /// looking at in a browser: `cargo test --lib write_views_for_screenshots -- --ignored`.
    /// `tests/pages.rs` checks the same pages in headless Chromium.
    #[test]
    #[ignore]
    fn write_views_for_screenshots() {
        let written = samples::write_pages(std::path::Path::new("/tmp/views")).unwrap();
        assert!(!written.is_empty());
    }
}
