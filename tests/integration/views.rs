//! The HTML of every view, rendered through the library's API and read with `scraper` (an HTML
//! parser, as a browser reads the page): form fields and their hints, labels, the CSRF token in
//! every form, the sign-out button when signed in, escaping, and nothing the
//! Content-Security-Policy would block. `tests/pages.rs` checks the same sample pages in
//! headless Chromium.

use std::fs;
use std::path::Path;

use crate::samples::{TOKEN, account, all_pages, out, signed_in, verify};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use askama::Template;
use flex_user::web::views::{
    AddressView, Chrome, ErrorView, FormErrors, HomeView, ResetNewView, ResetRequestView, ResetVerifyView, SignInView,
    SignUpView, VerifyView,
};
use scraper::{ElementRef, Html, Selector};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn parse(html: &str) -> Html {
    Html::parse_document(html)
}

fn selector(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("bad selector {css:?}: {e:?}"))
}

/// The elements of the page that `css` selects, in document order.
fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&selector(css)).collect()
}

/// The elements inside `el` that `css` selects.
fn select_in<'a>(el: ElementRef<'a>, css: &str) -> Vec<ElementRef<'a>> {
    el.select(&selector(css)).collect()
}

/// The value of attribute `name`; `Some("")` for a bare attribute.
fn attr<'a>(el: ElementRef<'a>, name: &str) -> Option<&'a str> {
    el.value().attr(name)
}

/// The opening tag, for messages.
fn tag(el: ElementRef<'_>) -> String {
    format!("{:?}", el.value())
}

fn text(el: ElementRef<'_>) -> String {
    el.text().collect()
}

fn input<'a>(doc: &'a Html, id: &str) -> ElementRef<'a> {
    select(doc, "input")
        .into_iter()
        .find(|t| attr(*t, "id") == Some(id))
        .unwrap_or_else(|| panic!("no input with id {id} in\n{}", doc.html()))
}

fn forms(doc: &Html) -> Vec<ElementRef<'_>> {
    select(doc, "form")
}

/// The form that posts to `action`.
fn form_to<'a>(doc: &'a Html, action: &str) -> Option<ElementRef<'a>> {
    forms(doc).into_iter().find(|f| attr(*f, "action") == Some(action))
}

#[test]
fn every_form_posts_and_carries_the_csrf_token() {
    let hidden_token = format!(r#"<input type="hidden" name="csrf_token" value="{TOKEN}">"#);
    for pages in [all_pages(out), all_pages(signed_in)] {
        for (name, html) in pages {
            let doc = parse(&html);
            let forms = forms(&doc);
            for form in &forms {
                assert_eq!(attr(*form, "method"), Some("post"), "{name}: {}", tag(*form));
                let tokens: Vec<_> = select_in(*form, r#"input[type="hidden"][name="csrf_token"]"#);
                assert!(
                    tokens.len() == 1 && attr(tokens[0], "value") == Some(TOKEN),
                    "{name}: a form without the csrf token: {}",
                    form.html()
                );
            }
            // and written as the template writes it, once a form
            assert_eq!(html.matches(&hidden_token).count(), forms.len(), "{name}");
        }
    }
}

#[test]
fn signed_in_pages_have_a_sign_out_button_and_signed_out_pages_do_not() {
    for (name, html) in all_pages(signed_in) {
        let doc = parse(&html);
        let sign_out = form_to(&doc, "/sign-out").unwrap_or_else(|| panic!("{name}: no sign-out form"));
        assert_eq!(select_in(sign_out, r#"button[type="submit"]"#).len(), 1, "{name}");
        assert!(html.contains("alice"), "{name}: the display name is missing");
        assert!(!select(&doc, r#"a[href="/account"]"#).is_empty(), "{name}");
    }
    for (name, html) in all_pages(out) {
        let doc = parse(&html);
        assert!(!html.contains("/sign-out"), "{name}");
        assert!(!select(&doc, r#"a[href="/sign-in"]"#).is_empty(), "{name}");
        assert!(!select(&doc, r#"a[href="/sign-up"]"#).is_empty(), "{name}");
    }
    let home = HomeView { chrome: signed_in() }.render().unwrap();
    assert!(home.contains("Signed in as <strong class=\"identity\">alice</strong>"), "{home}");
}

#[test]
fn every_page_is_a_complete_document() {
    for (name, html) in all_pages(out).into_iter().chain(all_pages(signed_in)) {
        assert!(html.starts_with("<!doctype html>"), "{name}");
        assert!(html.contains(r#"<html lang="en">"#), "{name}");
        assert!(html.contains(r#"<meta charset="utf-8">"#), "{name}");
        assert!(html.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#), "{name}");
        assert!(html.contains(r#"<link rel="stylesheet" href="/static/style.css">"#), "{name}");
        let doc = parse(&html);
        assert_eq!(select(&doc, r#"main[id="main"]"#).len(), 1, "{name}");
        assert!(!select(&doc, r##"a[href="#main"]"##).is_empty(), "{name}: no skip link");
        assert_eq!(select(&doc, r#"a.brand[href="/"]"#).len(), 1, "{name}");
        assert_eq!(select(&doc, "h1").len(), 1, "{name}: one h1");
    }
}

#[test]
fn every_input_has_a_label_and_ids_are_unique() {
    for (name, html) in all_pages(out).into_iter().chain(all_pages(signed_in)) {
        let doc = parse(&html);
        for el in select(&doc, "input") {
            if attr(el, "type") == Some("hidden") {
                continue;
            }
            let id = attr(el, "id").unwrap_or_else(|| panic!("{name}: input without id: {}", tag(el)));
            assert_eq!(select(&doc, &format!(r#"label[for="{id}"]"#)).len(), 1, "{name}: no label for {id}");
            assert!(attr(el, "autocomplete").is_some(), "{name}: no autocomplete hint on {}", tag(el));
        }
        let all_ids: Vec<&str> = select(&doc, "[id]").into_iter().filter_map(|el| attr(el, "id")).collect();
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
    let doc = parse(&html);
    assert_eq!(forms(&doc).iter().filter(|f| attr(**f, "action") == Some("/sign-up")).count(), 1);
    for (id, ty, ac, value) in [
        ("username", "text", "username", "bob"),
        ("email", "email", "email", "bob@example.com"),
        ("phone", "tel", "tel", "+15555550100"),
    ] {
        let el = input(&doc, id);
        let tag = tag(el);
        assert_eq!(attr(el, "name"), Some(id));
        assert_eq!(attr(el, "type"), Some(ty), "{tag}");
        assert_eq!(attr(el, "autocomplete"), Some(ac), "{tag}");
        assert_eq!(attr(el, "value"), Some(value), "{tag}");
        assert_eq!(attr(el, "required"), None, "optional fields are not required: {tag}");
    }
    assert!(html.contains("Give at least one of username, email or phone"));
    let pw = input(&doc, "password");
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
        passkeys: false,
    }
    .render()
    .unwrap();
    let doc = parse(&html);
    let id = input(&doc, "identifier");
    assert_eq!(attr(id, "name"), Some("identifier"));
    assert_eq!(attr(id, "autocomplete"), Some("username"));
    assert_eq!(attr(id, "value"), Some("bob@example.com"));
    assert!(html.contains(r#"<label for="identifier">Username, email or phone</label>"#));
    let pw = input(&doc, "password");
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
    let doc = parse(&html);
    for channel in ["email", "phone"] {
        assert!(html.contains(&format!(r#"href="/verify/{channel}""#)), "{channel}");
        let send = form_to(&doc, &format!("/verify/{channel}/send"));
        let send = send.unwrap_or_else(|| panic!("no send form for {channel}"));
        assert!(text(send).contains("Send a code"));
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
        assert_eq!(attr(input(&doc, id), "autocomplete"), Some(ac), "{id}");
    }
    assert_eq!(attr(input(&doc, "acct-email"), "value"), Some("alice@example.com"));
    assert_eq!(attr(input(&doc, "acct-current-password"), "name"), Some("current_password"));
    assert_eq!(attr(input(&doc, "pw-new-password"), "name"), Some("new_password"));
    for id in ["acct-username", "acct-email", "acct-phone", "acct-current-password"] {
        assert_eq!(attr(input(&doc, id), "required"), None, "{id}");
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
    let doc = parse(&html);
    assert!(html.contains(r#"role="status""#) && html.contains("We sent a code to alice@example.com."));
    let email = input(&doc, "acct-email");
    assert_eq!(attr(email, "value"), Some("typed@example"));
    assert_eq!(attr(email, "aria-invalid"), Some("true"));
    assert_eq!(attr(email, "aria-describedby"), Some("acct-email-error"));
    assert!(html.contains(r#"id="acct-email-error""#));
    let cp = input(&doc, "acct-current-password");
    assert_eq!(attr(cp, "aria-describedby"), Some("acct-current-password-hint acct-current-password-error"));
    assert_eq!(attr(input(&doc, "pw-current-password"), "aria-invalid"), None);
    assert_eq!(attr(input(&doc, "pw-new-password"), "aria-invalid"), Some("true"));
    assert!(html.contains("This password is too common."));
    assert_eq!(html.matches(r#"role="alert""#).count(), 2);
}

#[test]
fn verify_page_code_input_and_resend() {
    for channel in ["email", "phone"] {
        let mut v = verify(signed_in(), channel);
        v.errors.field("code", "That code is wrong or has expired.");
        let html = v.render().unwrap();
        let doc = parse(&html);
        assert!(form_to(&doc, &format!("/verify/{channel}")).is_some());
        assert!(form_to(&doc, &format!("/verify/{channel}/send")).is_some());
        let code = input(&doc, "code");
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
    let doc = parse(&html);
    assert!(html.contains(r#"action="/password-reset""#));
    assert_eq!(attr(input(&doc, "identifier"), "autocomplete"), Some("username"));
    assert_eq!(attr(input(&doc, "identifier"), "name"), Some("identifier"));

    let html = ResetVerifyView { chrome: out(), errors: FormErrors::default() }.render().unwrap();
    let doc = parse(&html);
    assert!(html.contains(r#"action="/password-reset/verify""#));
    assert!(html.contains("If an account matches, we sent it a code"));
    let code = input(&doc, "code");
    assert_eq!(attr(code, "autocomplete"), Some("one-time-code"));
    assert_eq!(attr(code, "inputmode"), Some("numeric"));

    let html = ResetNewView { chrome: out(), errors: FormErrors::default() }.render().unwrap();
    let doc = parse(&html);
    assert!(html.contains(r#"action="/password-reset/new""#));
    let pw = input(&doc, "new_password");
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
    let doc = parse(&ErrorView::not_found(Some(signed_in())).render().unwrap());
    assert!(form_to(&doc, "/sign-out").is_some());
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
        SignInView {
            chrome: chrome(),
            identifier: evil.into(),
            next: evil.into(),
            errors: FormErrors::default(),
            passkeys: true,
        }
        .render()
        .unwrap(),
        VerifyView { address: evil.into(), notice: Some(evil.into()), ..verify(chrome(), "email") }.render().unwrap(),
        ErrorView::new(Some(chrome()), 500, evil, evil).render().unwrap(),
    ];
    for html in pages {
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains(escaped), "{html}");
        // and a parser sees the text, not an element
        assert!(select(&parse(&html), "b").is_empty(), "{html}");
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
    let doc = parse(&html);
    let alert = select(&doc, r#"[role="alert"]"#).into_iter().next().expect("alert");
    assert!(text(alert).contains("Give at least one of username, email or phone."));
    let user = input(&doc, "username");
    assert_eq!(attr(user, "aria-invalid"), Some("true"));
    assert_eq!(attr(user, "aria-describedby"), Some("username-hint username-error"));
    assert!(html.contains(r#"id="username-error""#) && html.contains("already exists."));
    let pw = input(&doc, "password");
    assert_eq!(attr(pw, "value"), None);
    assert_eq!(attr(pw, "aria-invalid"), Some("true"));
    for (_, page) in all_pages(signed_in) {
        for el in select(&parse(&page), r#"input[type="password"]"#) {
            assert_eq!(attr(el, "value"), None, "{}", tag(el));
        }
    }
}

/// How the passkey pages load their script: from this origin, no inline code.
const PASSKEY_SCRIPT: &str = r#"<script src="/static/passkey.js" defer></script>"#;

/// A URL the CSP's `'self'` allows: a path on this origin, or a fragment.
fn same_origin(url: &str) -> bool {
    (url.starts_with('/') && !url.starts_with("//") && !url.starts_with("/\\")) || url.starts_with('#')
}

/// What in `html` the server's CSP would block, or would load from elsewhere. The CSP:
/// default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;
/// object-src 'none'; base-uri 'none'; form-action 'self'; …
fn csp_problems(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    // in the text as sent, so that nothing the parser drops (a comment, a stray tag) hides one;
    // the one script a page may load is this site's file, external and empty (script-src 'self')
    let lower = html.to_ascii_lowercase().replace(PASSKEY_SCRIPT, "");
    for banned in ["<script", "<style", "style=", "javascript:", " onclick", " onsubmit", " onload"] {
        if lower.contains(banned) {
            found.push(format!("has {banned}"));
        }
    }
    let doc = parse(html);
    for el in select(&doc, "*") {
        let tag = el.value().name();
        let own_script = tag == "script"
            && el.value().attr("src").is_some_and(same_origin)
            && el.text().all(|t| t.trim().is_empty());
        if ["script", "style", "base", "object", "embed", "iframe", "frame"].contains(&tag) && !own_script {
            found.push(format!("a <{tag}>"));
        }
        for (attr, value) in el.value().attrs() {
            if attr == "style" {
                found.push(format!("a style attribute on <{tag}>: {value:?}"));
            }
            if attr.starts_with("on") {
                found.push(format!("an inline event handler {attr} on <{tag}>"));
            }
            if value.trim_start().to_ascii_lowercase().starts_with("javascript:") {
                found.push(format!("a javascript: URL in {attr} on <{tag}>"));
            }
            let loads = matches!(attr, "src" | "srcset" | "action" | "formaction" | "poster" | "data")
                || (tag == "link" && attr == "href");
            if (loads || value.contains("/static")) && !same_origin(value) {
                found.push(format!("<{tag} {attr}={value:?}> is not on this origin"));
            }
            if let Some(path) = value.strip_prefix("/static/")
                && !manifest_dir().join("static").join(path).is_file()
            {
                found.push(format!("<{tag} {attr}={value:?}>: no such file in static/"));
            }
        }
    }
    let stylesheets = select(&doc, r#"link[rel="stylesheet"]"#).len();
    if stylesheets != 1 {
        found.push(format!("{stylesheets} stylesheets"));
    }
    found
}

#[test]
fn pages_raise_no_csp_violation() {
    let pages = crate::samples::pages();
    assert!(pages.len() >= 30, "{} sample pages", pages.len());
    let alice = all_pages(signed_in).into_iter().map(|(n, h)| (format!("{n}_alice"), h));
    let mut failures = Vec::new();
    for (name, html) in pages.into_iter().chain(alice) {
        assert!(!select(&parse(&html), "main").is_empty(), "{name}: the parser found no <main>");
        failures.extend(csp_problems(&html).into_iter().map(|p| format!("{name}: {p}")));
    }
    // The stylesheet itself loads nothing from elsewhere (fonts, images, imports).
    let css = fs::read_to_string(manifest_dir().join("static/style.css")).unwrap().to_ascii_lowercase();
    for banned in ["@import", "url(", "expression("] {
        if css.contains(banned) {
            failures.push(format!("static/style.css: has {banned}"));
        }
    }
    assert!(failures.is_empty(), "{} problems:\n  {}", failures.len(), failures.join("\n  "));
}

/// A page that breaks each rule, so the scan above is seen to find each kind of problem (a scan
/// that silently checked nothing would pass every page).
#[test]
fn the_csp_scan_sees_each_kind_of_problem() {
    let canary = r#"<!doctype html><html><head><link rel="stylesheet" href="/static/style.css">
<LINK REL="stylesheet" HREF="//evil.example/x.css"><base href="/"></head><body><main>
<p>x<a href="/a" ONCLICK='go()'>y</a><!-- <script> --><input disabled value=v Style="c">
<img src="https://cdn.example/x.png"><a href="/static/missing.css">m</a><iframe src="/f"></iframe>
<a href=" JavaScript:go()">j</a></main></body></html>"#;
    let found = csp_problems(canary);
    for expected in [
        "has <script",
        "has style=",
        "has javascript:",
        " onclick",
        "a <base>",
        "a <iframe>",
        "a style attribute on <input>: \"c\"",
        "an inline event handler onclick on <a>",
        "a javascript: URL in href on <a>",
        "<link href=\"//evil.example/x.css\"> is not on this origin",
        "<img src=\"https://cdn.example/x.png\"> is not on this origin",
        "<a href=\"/static/missing.css\">: no such file in static/",
        "2 stylesheets",
    ] {
        assert!(found.iter().any(|p| p.contains(expected)), "the scan missed {expected:?}: {found:#?}");
    }
    // a comment is not an element; the scan of the text above is what catches it
    assert!(!found.iter().any(|p| p == "a <script>"), "{found:#?}");
    assert!(!found.iter().any(|p| p.contains("/static/style.css")), "{found:#?}");
    // what the scan relies on the parser for: lower-case names, bare and unquoted values
    let doc = parse(canary);
    let input = select(&doc, "input")[0];
    assert_eq!((attr(input, "disabled"), attr(input, "value"), attr(input, "style")), (Some(""), Some("v"), Some("c")));
    assert_eq!(attr(select(&doc, r#"a[href="/a"]"#)[0], "onclick"), Some("go()"));
    assert!(csp_problems(&HomeView { chrome: out() }.render().unwrap()).is_empty());
    // the site's own script file passes; inline code, another origin or a missing file do not
    let page = |script: &str| {
        format!(
            r#"<html><head><link rel="stylesheet" href="/static/style.css"></head><body><main>{script}</main></body></html>"#
        )
    };
    assert_eq!(csp_problems(&page(PASSKEY_SCRIPT)), Vec::<String>::new());
    for bad in [
        r#"<script>go()</script>"#,
        r#"<script src="/static/passkey.js">go()</script>"#,
        r#"<script src="https://cdn.example/x.js"></script>"#,
        r#"<script src="/static/missing.js" defer></script>"#,
    ] {
        assert!(!csp_problems(&page(bad)).is_empty(), "{bad}");
    }

    assert!(same_origin("/static/style.css") && same_origin("#main"));
    assert!(!same_origin("//evil.example/x.css") && !same_origin("https://cdn.example/x.js") && !same_origin("data:x"));
}

/// Writes every sample page to /tmp/views/*.html with the stylesheet in /tmp/views/static/, for
/// looking at in a browser: `cargo test --test integration write_views_for_screenshots -- --ignored`.
#[test]
#[ignore]
fn write_views_for_screenshots() {
    let written = crate::samples::write_pages(Path::new("/tmp/views")).unwrap();
    assert!(!written.is_empty());
}
