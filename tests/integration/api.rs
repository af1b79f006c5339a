//! The JSON API (CONTRACT.md, "JSON API"), over HTTP on SQLite and PostgreSQL: every route, the
//! error shape and codes, the pages' order of checks (413, 429, then the request), no cookies,
//! tokens that are sessions (ended by sign-out, password change, reset, delete, a code sign-in
//! through an unverified channel), FLOWs bound to their kind and account and used once (also
//! under concurrency), the pages and the API on one account, and the spec against the routes.

use crate::common::app::{Browser, TestApp};
use crate::common::flows::*;
use crate::common::{TestDb, at_once};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

on_both_databases!(
    sign_up_verify_sign_in_me_sign_out,
    errors_have_the_contract_shape_and_no_cookie_is_set,
    the_checks_run_in_the_pages_order,
    wrong_passwords_are_throttled_and_unknown_accounts_answer_alike,
    a_reset_by_flow_and_its_flow_used_once,
    a_code_sign_in_by_flow,
    flows_are_bound_to_their_kind,
    a_proven_reset_completes_once_under_concurrency,
    a_sign_in_code_signs_in_once_under_concurrency,
    patch_me_keeps_absent_removes_null_and_asks_for_the_password,
    sending_and_verifying_addresses,
    everything_that_ends_sessions_ends_tokens,
    the_pages_and_the_api_share_one_account,
    every_route_of_the_spec_is_served,
    a_second_factor_makes_sign_in_a_two_step_flow,
);

/// An API client: no cookie store, no redirects.
struct Api {
    base: String,
    client: Client,
}

/// An answer read whole.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    fn expect(self, status: StatusCode) -> Answer {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }

    /// The contract's error shape with `code`.
    #[track_caller]
    fn error(self, status: StatusCode, code: &str) -> Answer {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.body["error"], code, "{}", self.text);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.text);
        assert!(self.header("content-type").is_some_and(|c| c.starts_with("application/json")));
        self
    }

    fn token(&self) -> String {
        self.body["token"].as_str().unwrap_or_else(|| panic!("no token: {}", self.text)).to_owned()
    }

    fn flow(&self) -> String {
        self.body["flow"].as_str().unwrap_or_else(|| panic!("no flow: {}", self.text)).to_owned()
    }
}

impl Api {
    fn new(app: &TestApp) -> Api {
        let client = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Api { base: format!("{}/api/v1", app.base), client }
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Answer {
        let response = request.send().expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        // on every answer: no cookie, the pages' security headers, no-store
        assert!(headers.get("set-cookie").is_none(), "a cookie was set: {headers:?}");
        assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
        assert!(headers.get("content-security-policy").is_some() && headers.get("x-content-type-options").is_some());
        Answer { status, headers, body, text }
    }

    fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body))
    }

    fn post_as(&self, token: &str, path: &str, body: Option<Value>) -> Answer {
        let request = self.client.post(format!("{}{path}", self.base)).bearer_auth(token);
        self.send(match body {
            Some(body) => request.json(&body),
            None => request,
        })
    }

    fn patch_as(&self, token: &str, body: Value) -> Answer {
        self.send(self.client.patch(format!("{}/me", self.base)).bearer_auth(token).json(&body))
    }

    fn me(&self, token: &str) -> Answer {
        self.send(self.client.get(format!("{}/me", self.base)).bearer_auth(token))
    }

    fn sign_in(&self, identifier: &str, password: &str) -> Answer {
        self.post("/sign-in", json!({"identifier": identifier, "password": password}))
    }

    fn assert_dead(&self, token: &str) {
        self.me(token).error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

/// Alice signs up by API (username, email, phone): her token.
fn alice_by_api(app: &TestApp, api: &Api) -> String {
    let answer = api
        .post(
            "/sign-up",
            json!({"username": "alice", "email": ALICE_EMAIL, "phone": ALICE_PHONE, "password": PASSWORD}),
        )
        .expect(StatusCode::CREATED);
    app.email_to(ALICE_EMAIL, 0);
    answer.token()
}

fn sign_up_verify_sign_in_me_sign_out(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let answer = api
        .post("/sign-up", json!({"username": "alice", "email": ALICE_EMAIL, "phone": null, "password": PASSWORD}))
        .expect(StatusCode::CREATED);
    let token = answer.token();
    let user = &answer.body["user"];
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], ALICE_EMAIL);
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["phone"], Value::Null);
    assert_eq!(user["phone_verified"], false);
    assert_eq!((user["has_password"].clone(), user["two_factor"].clone()), (json!(true), json!(false)));
    assert!(user["id"].is_i64() && user["date_joined"].is_string(), "{user}");

    let code = mailed_code(&app, ALICE_EMAIL, 0);
    api.post_as(&token, "/me/email/verify", Some(json!({"code": wrong(&code)})))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    app.clock.advance(secs(2)); // past the backoff of one failure
    let verified = api.post_as(&token, "/me/email/verify", Some(json!({"code": code}))).expect(StatusCode::OK);
    assert_eq!(verified.body["email_verified"], true);

    let second = api.sign_in("alice", PASSWORD).expect(StatusCode::OK).token();
    assert_ne!(second, token);
    assert_eq!(api.me(&second).expect(StatusCode::OK).body["email"], ALICE_EMAIL);
    api.post_as(&second, "/sign-out", None).expect(StatusCode::NO_CONTENT);
    api.assert_dead(&second);
    api.post_as(&second, "/sign-out", None).error(StatusCode::UNAUTHORIZED, "unauthorized");
    // the first token lives on
    api.me(&token).expect(StatusCode::OK);
    // no token, a malformed one, a browser-style header
    api.send(api.client.get(format!("{}/me", api.base))).error(StatusCode::UNAUTHORIZED, "unauthorized");
    api.assert_dead("not-a-token");
    api.send(api.client.get(format!("{}/me", api.base)).basic_auth("alice", Some(PASSWORD)))
        .error(StatusCode::UNAUTHORIZED, "unauthorized");

    // idle timeout: a token unused for longer than the idle time is dead (default one day)
    app.clock.advance(chrono::Duration::hours(25));
    api.assert_dead(&token);
}

fn errors_have_the_contract_shape_and_no_cookie_is_set(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let url = format!("{}/sign-in", api.base);
    // a form-encoded body: 415
    api.send(api.client.post(&url).form(&[("identifier", "alice"), ("password", PASSWORD)]))
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // text/plain with JSON in it: 415 too
    api.send(api.client.post(&url).header("content-type", "text/plain").body("{}"))
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // malformed JSON: 400 in JSON, not the framework's plain text
    api.send(api.client.post(&url).header("content-type", "application/json").body("{\"identifier\":"))
        .error(StatusCode::BAD_REQUEST, "bad_request");
    api.send(api.client.post(&url).header("content-type", "application/json"))
        .error(StatusCode::BAD_REQUEST, "bad_request");
    // JSON of the wrong shape: 422 naming the field
    let wrong = api
        .post("/sign-in", json!({"identifier": 5, "password": PASSWORD}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(wrong.body["fields"]["identifier"].is_string(), "{}", wrong.text);
    api.post("/sign-in", json!(["alice", PASSWORD])).error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // unknown routes, and the site's pages are not the API's
    api.send(api.client.get(format!("{}/nothing/here", api.base))).error(StatusCode::NOT_FOUND, "not_found");
    api.send(api.client.get(&api.base)).error(StatusCode::NOT_FOUND, "not_found");
    api.post("/account", json!({})).error(StatusCode::NOT_FOUND, "not_found");
    // invalid sign-up: 422 with fields, nothing made
    let invalid = api
        .post("/sign-up", json!({"username": "аdmin", "email": "not an email", "password": "12345678"}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    for field in ["username", "email", "password"] {
        assert!(invalid.body["fields"][field].is_string(), "{field}: {}", invalid.text);
    }
    let none = api.post("/sign-up", json!({"password": PASSWORD})).error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(none.body["message"].as_str().unwrap().contains("at least one"), "{}", none.text);
    // a cookie sent is not read: a signed-in browser's cookies do not make an API request signed in
    let browser = alice(&app);
    let cookies = browser.jar.clone();
    let header = reqwest::cookie::CookieStore::cookies(&*cookies, &app.base.parse().unwrap()).unwrap();
    api.send(api.client.get(format!("{}/me", api.base)).header("cookie", header.to_str().unwrap()))
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    // nor is a session key a token (the session cookie's value carries one)
    let cookie = browser.cookie("flex_session").expect("a session cookie");
    let key = &cookie[cookie.len() - 64..]; // after the cookie's signature: the session's key
    api.assert_dead(key);
    // no CSRF token needed (none is read): a plain JSON POST works
    api.post("/password-reset", json!({"identifier": "alice"})).expect(StatusCode::ACCEPTED);
}

fn the_checks_run_in_the_pages_order(db: &TestDb) {
    let app = crate::common::app::spawn_app(db, &[("FLEX_USER_IP_RATE_LIMIT", "3")]);
    let api = Api::new(&app);
    let big = "x".repeat(70 * 1024);
    // 413 before anything, in JSON
    let too_large = api.post("/sign-in", json!({"identifier": big, "password": "x"}));
    too_large.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    for nobody in ["nobody1", "nobody2", "nobody3"] {
        api.sign_in(nobody, "wrong password").error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // the bucket is empty: 429 in JSON with Retry-After, before the body is looked at
    let throttled = api.post("/sign-in", json!({})).error(StatusCode::TOO_MANY_REQUESTS, "throttled");
    let retry = throttled.header("retry-after").expect("Retry-After").parse::<u64>().unwrap();
    assert_eq!(throttled.body["retry_after"], json!(retry));
    let form = api.send(api.client.post(format!("{}/sign-in", api.base)).form(&[("a", "b")]));
    form.error(StatusCode::TOO_MANY_REQUESTS, "throttled"); // 429 before 415
    api.patch_as("x", json!({})).error(StatusCode::TOO_MANY_REQUESTS, "throttled"); // PATCH counts too
    // but 413 still comes first
    api.post("/sign-in", json!({"identifier": big})).error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // a GET is not limited
    api.send(api.client.get(format!("{}/openapi.json", api.base))).expect(StatusCode::OK);
}

fn wrong_passwords_are_throttled_and_unknown_accounts_answer_alike(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    alice_by_api(&app, &api);
    let known = api.sign_in("alice", "wrong password").error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let unknown = api.sign_in("nobody", "wrong password").error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(known.body, unknown.body);
    // the second try of each is inside its window (1 s): 429, the same for both
    let known = api.sign_in("alice", PASSWORD).error(StatusCode::TOO_MANY_REQUESTS, "throttled");
    let unknown = api.sign_in("nobody", "wrong password").error(StatusCode::TOO_MANY_REQUESTS, "throttled");
    assert_eq!(known.body, unknown.body);
    assert_eq!(known.header("retry-after"), unknown.header("retry-after"));
    app.clock.advance(secs(2));
    api.sign_in("alice", PASSWORD).expect(StatusCode::OK);
    // a missing field: 422, nothing counted
    api.post("/sign-in", json!({"identifier": "alice"})).error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    api.sign_in("alice", PASSWORD).expect(StatusCode::OK);
}

fn a_reset_by_flow_and_its_flow_used_once(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let token = alice_by_api(&app, &api);
    past_cooldown(&app);
    let known = api.post("/password-reset", json!({"identifier": ALICE_EMAIL})).expect(StatusCode::ACCEPTED);
    let unknown = api.post("/password-reset", json!({"identifier": "nobody@example.org"})).expect(StatusCode::ACCEPTED);
    assert_eq!(known.flow().len(), unknown.flow().len());
    assert_eq!(known.body.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["flow"]);
    api.post("/password-reset", json!({"identifier": " "})).error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (flow, other) = (known.flow(), unknown.flow());
    let code = mailed_code(&app, ALICE_EMAIL, 1);

    // not proven yet: completing is refused
    api.post("/password-reset/complete", json!({"flow": flow, "new_password": NEW_PASSWORD}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // a wrong code, then the backoff; the unknown account's flow answers alike
    let wrong_known = api.post("/password-reset/verify", json!({"flow": flow, "code": wrong(&code)}));
    let wrong_unknown = api.post("/password-reset/verify", json!({"flow": other, "code": code}));
    assert_eq!(
        wrong_known.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid").body,
        wrong_unknown.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid").body
    );
    api.post("/password-reset/verify", json!({"flow": flow, "code": code}))
        .error(StatusCode::TOO_MANY_REQUESTS, "throttled");
    api.post("/password-reset/verify", json!({"flow": other, "code": code}))
        .error(StatusCode::TOO_MANY_REQUESTS, "throttled");
    app.clock.advance(secs(2));
    let proven = api.post("/password-reset/verify", json!({"flow": flow, "code": code})).expect(StatusCode::OK);
    assert_eq!(proven.flow(), flow, "the same flow, now proven");
    // the password rules apply
    api.post("/password-reset/complete", json!({"flow": flow, "new_password": "12345678"}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    api.post("/password-reset/complete", json!({"flow": flow, "new_password": NEW_PASSWORD}))
        .expect(StatusCode::NO_CONTENT);
    // every token of the user ended; the new password works; the flow is spent
    api.assert_dead(&token);
    api.sign_in("alice", NEW_PASSWORD).expect(StatusCode::OK);
    api.post("/password-reset/complete", json!({"flow": flow, "new_password": "another fine password"}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    api.post("/password-reset/verify", json!({"flow": "nonsense", "code": code}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // a FLOW lives as long as its code
    past_cooldown(&app);
    let late = api.post("/password-reset", json!({"identifier": "alice"})).expect(StatusCode::ACCEPTED).flow();
    // (email 2 is the notice of the completed reset)
    let late_code = mailed_code(&app, ALICE_EMAIL, 3);
    app.clock.advance(secs(901));
    let expired = api.post("/password-reset/verify", json!({"flow": late, "code": late_code}));
    assert!(expired.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid").body["fields"]["flow"].is_string());
}

fn a_code_sign_in_by_flow(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    alice_by_api(&app, &api);
    let code_verified = mailed_code(&app, ALICE_EMAIL, 0);
    let first = api.sign_in("alice", PASSWORD).token();
    api.post_as(&first, "/me/email/verify", Some(json!({"code": code_verified}))).expect(StatusCode::OK);
    past_cooldown(&app);
    let flow = api.post("/sign-in/code", json!({"identifier": "alice"})).expect(StatusCode::ACCEPTED).flow();
    let unknown = api.post("/sign-in/code", json!({"identifier": "nobody"})).expect(StatusCode::ACCEPTED).flow();
    assert_eq!(flow.len(), unknown.len());
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    api.post("/sign-in/code/verify", json!({"flow": unknown, "code": code}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let signed_in = api.post("/sign-in/code/verify", json!({"flow": flow, "code": code})).expect(StatusCode::OK);
    assert_eq!(signed_in.body["user"]["username"], "alice");
    api.me(&signed_in.token()).expect(StatusCode::OK);
    // through a verified channel nothing else ends
    api.me(&first).expect(StatusCode::OK);
    // used once
    api.post("/sign-in/code/verify", json!({"flow": flow, "code": code}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}

fn flows_are_bound_to_their_kind(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    alice_by_api(&app, &api);
    past_cooldown(&app);
    let reset = api.post("/password-reset", json!({"identifier": ALICE_EMAIL})).flow();
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    // a reset's flow and code do not sign in, nor pass a second step
    api.post("/sign-in/code/verify", json!({"flow": reset, "code": code}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    api.post("/sign-in/two-factor", json!({"flow": reset, "code": code}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    api.post("/sign-in/two-factor", json!({"flow": "x", "code": "123456"}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    api.post("/sign-in/two-factor", json!({"code": "123456"})).error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // and still prove the reset
    api.post("/password-reset/verify", json!({"flow": reset, "code": code})).expect(StatusCode::OK);
}

fn a_proven_reset_completes_once_under_concurrency(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    alice_by_api(&app, &api);
    past_cooldown(&app);
    let flow = api.post("/password-reset", json!({"identifier": "alice"})).flow();
    let code = mailed_code(&app, ALICE_EMAIL, 1);
    api.post("/password-reset/verify", json!({"flow": flow, "code": code})).expect(StatusCode::OK);
    let passwords =
        ["first racing password", "second racing password", "third racing password", "fourth racing password"];
    let statuses = at_once(4, |i| {
        api.post("/password-reset/complete", json!({"flow": flow, "new_password": passwords[i]})).status
    });
    let done: Vec<usize> = (0..4).filter(|&i| statuses[i] == StatusCode::NO_CONTENT).collect();
    assert_eq!(done.len(), 1, "{statuses:?}");
    let refused = [StatusCode::NO_CONTENT, StatusCode::UNPROCESSABLE_ENTITY, StatusCode::SERVICE_UNAVAILABLE];
    assert!(statuses.iter().all(|s| refused.contains(s)), "{statuses:?}");
    api.sign_in("alice", passwords[done[0]]).expect(StatusCode::OK);
}

fn a_sign_in_code_signs_in_once_under_concurrency(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    alice_by_api(&app, &api);
    past_cooldown(&app);
    let flow = api.post("/sign-in/code", json!({"identifier": ALICE_PHONE})).flow();
    let code = texted_code(&app, ALICE_PHONE, 1);
    let answers = at_once(4, |_| api.post("/sign-in/code/verify", json!({"flow": flow, "code": code})).status);
    assert_eq!(answers.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{answers:?}");
}

fn patch_me_keeps_absent_removes_null_and_asks_for_the_password(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let token = alice_by_api(&app, &api);
    // a username needs no password; absent fields stay
    let renamed = api.patch_as(&token, json!({"username": "alice2"})).expect(StatusCode::OK);
    assert_eq!(
        (renamed.body["username"].clone(), renamed.body["email"].clone()),
        (json!("alice2"), json!(ALICE_EMAIL))
    );
    // removing the phone needs the current password
    let refused = api.patch_as(&token, json!({"phone": null})).error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(refused.body["fields"]["current_password"].is_string(), "{}", refused.text);
    api.patch_as(&token, json!({"phone": null, "current_password": "wrong password"}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let removed = api.patch_as(&token, json!({"phone": null, "current_password": PASSWORD})).expect(StatusCode::OK);
    assert_eq!(removed.body["phone"], Value::Null);
    // invalid and taken values
    let bad = api.patch_as(&token, json!({"email": "not an email"})).error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(bad.body["fields"]["email"].is_string());
    api.post("/sign-up", json!({"username": "bob", "password": PASSWORD})).expect(StatusCode::CREATED);
    let taken = api.patch_as(&token, json!({"username": "BOB"})).error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(taken.body["fields"]["username"].is_string(), "{}", taken.text);
    // removing the last identifiers is refused
    api.patch_as(&token, json!({"username": null, "email": null, "current_password": PASSWORD}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // a changed email is unverified and sent a code
    past_cooldown(&app);
    let changed = api
        .patch_as(&token, json!({"email": "alice@example.com", "current_password": PASSWORD}))
        .expect(StatusCode::OK);
    assert_eq!(
        (changed.body["email"].clone(), changed.body["email_verified"].clone()),
        (json!("alice@example.com"), json!(false))
    );
    app.email_to("alice@example.com", 0);
}

fn sending_and_verifying_addresses(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let token = alice_by_api(&app, &api);
    // within the cooldown of the sign-up's code: 429
    let cooling = api.post_as(&token, "/me/phone/send", None).error(StatusCode::TOO_MANY_REQUESTS, "throttled");
    assert!(cooling.header("retry-after").is_some());
    past_cooldown(&app);
    api.post_as(&token, "/me/phone/send", None).expect(StatusCode::ACCEPTED);
    let code = texted_code(&app, ALICE_PHONE, 1);
    let user = api.post_as(&token, "/me/phone/verify", Some(json!({"code": code}))).expect(StatusCode::OK);
    assert_eq!(user.body["phone_verified"], true);
    // verified, or not there, or not a channel: 404
    api.post_as(&token, "/me/phone/send", None).error(StatusCode::NOT_FOUND, "not_found");
    api.post_as(&token, "/me/phone/verify", Some(json!({"code": code}))).error(StatusCode::NOT_FOUND, "not_found");
    api.post_as(&token, "/me/fax/send", None).error(StatusCode::NOT_FOUND, "not_found");
    let other = api.post("/sign-up", json!({"username": "bob", "password": PASSWORD})).token();
    api.post_as(&other, "/me/email/send", None).error(StatusCode::NOT_FOUND, "not_found");
    // signed out: 401
    api.post("/me/email/send", json!({})).error(StatusCode::UNAUTHORIZED, "unauthorized");
}

fn everything_that_ends_sessions_ends_tokens(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let token = alice_by_api(&app, &api);
    let other = api.sign_in("alice", PASSWORD).token();

    // an API password change: this token stays, every other ends
    api.post_as(
        &token,
        "/me/password",
        Some(json!({"current_password": "wrong password", "new_password": NEW_PASSWORD})),
    )
    .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    api.post_as(&token, "/me/password", Some(json!({"current_password": PASSWORD, "new_password": "12345678"})))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    api.post_as(&token, "/me/password", Some(json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})))
        .expect(StatusCode::NO_CONTENT);
    api.me(&token).expect(StatusCode::OK);
    api.assert_dead(&other);

    // a code sign-in through an unverified channel (the phone) ends every token
    past_cooldown(&app);
    let flow = api.post("/sign-in/code", json!({"identifier": ALICE_PHONE})).flow();
    let code = texted_code(&app, ALICE_PHONE, 1);
    let fresh = api.post("/sign-in/code/verify", json!({"flow": flow, "code": code})).expect(StatusCode::OK).token();
    api.assert_dead(&token);
    let user = api.me(&fresh).expect(StatusCode::OK);
    assert_eq!((user.body["email"].clone(), user.body["has_password"].clone()), (Value::Null, json!(false)));

    // a reset on the page ends every token
    past_cooldown(&app);
    let browser = request_reset(&app, ALICE_PHONE);
    let code = texted_code(&app, ALICE_PHONE, 2);
    browser.get("/password-reset/verify");
    browser.post("/password-reset/verify", &[("code", &code)]).assert_redirect("/password-reset/new");
    browser.get("/password-reset/new");
    browser.post("/password-reset/new", &[("new_password", PASSWORD)]).assert_redirect("/sign-in");
    api.assert_dead(&fresh);
    api.sign_in("alice", PASSWORD).expect(StatusCode::OK);

    // deleting the account on the page ends its tokens
    let browser = Browser::new(&app);
    browser.sign_up(&[("username", "carol"), ("password", PASSWORD)]).assert_redirect("/account");
    let carol = api.sign_in("carol", PASSWORD).token();
    browser.get("/account/delete");
    browser.post("/account/delete", &[("current_password", PASSWORD), ("confirm", "delete")]).assert_redirect("/");
    api.assert_dead(&carol);
}

fn the_pages_and_the_api_share_one_account(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let token = alice_by_api(&app, &api);
    // signed up by API, signed in on the page
    let browser = Browser::new(&app);
    browser.sign_in("alice", PASSWORD).assert_redirect("/account");
    assert!(browser.get("/account").body.contains(ALICE_EMAIL));
    // the token is a session of the user, beside the browser's
    let export = browser.get("/account/export");
    let sessions = serde_json::from_str::<Value>(&export.body).unwrap()["sessions"].as_array().unwrap().len();
    assert_eq!(sessions, 2, "{}", export.body);
    // a page password change ends the API token
    browser.get("/account");
    browser
        .post("/account/password", &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD)])
        .assert_redirect("/account");
    api.assert_dead(&token);
    // and the API signs in with the page's new password; the page signs out, the token lives
    let token = api.sign_in("alice", NEW_PASSWORD).token();
    browser.get("/account");
    browser.post("/sign-out", &[]).assert_redirect("/");
    api.me(&token).expect(StatusCode::OK);
}

fn every_route_of_the_spec_is_served(db: &TestDb) {
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let spec = api.send(api.client.get(format!("{}/openapi.json", api.base))).expect(StatusCode::OK);
    assert!(spec.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = spec.body["paths"].as_object().unwrap();
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let url = format!("{}{}", app.base, path.replace("{channel}", "email"));
            let request = match method.as_str() {
                "get" => api.client.get(&url),
                "post" => api.client.post(&url),
                "patch" => api.client.patch(&url),
                other => panic!("unexpected method {other}"),
            };
            let answer = api.send(request.json(&json!({})));
            assert_ne!(answer.status, StatusCode::NOT_FOUND, "{method} {path} is in the spec but not served");
            assert!(answer.status.as_u16() < 500, "{method} {path}: {}", answer.text);
        }
    }
}

/// With an authenticator app on, the API's sign-in answers a `two_factor` FLOW instead of a
/// token; the FLOW takes a code (with the pages' rules: a wrong one is 422, a step is used once)
/// and gives a token once; a recovery code works there too.
fn a_second_factor_makes_sign_in_a_two_step_flow(db: &TestDb) {
    use flex_user::accounts::TotpSecret;
    let app = spawn(db, &[]);
    let api = Api::new(&app);
    let token = alice_by_api(&app, &api);
    let id = api.me(&token).expect(StatusCode::OK).body["id"].as_i64().unwrap();
    let secret = TotpSecret::random();
    let recovery = app.accounts.enable_totp(id, &secret, &secret.code_at(app.accounts.now())).unwrap().expect("on");
    assert_eq!(api.me(&token).expect(StatusCode::OK).body["two_factor"], true);
    app.clock.advance(secs(30));

    let answer = api.sign_in("alice", PASSWORD).expect(StatusCode::OK);
    assert!(answer.body.get("token").is_none(), "no token before the second step: {}", answer.text);
    let flow = answer.body["two_factor"].as_str().expect("a two_factor FLOW").to_owned();
    let code = secret.code_at(app.accounts.now());
    api.post("/sign-in/two-factor", json!({"flow": flow, "code": wrong(&code)}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    app.clock.advance(secs(2)); // past the backoff of one failure, still in the same step window
    let signed_in = api.post("/sign-in/two-factor", json!({"flow": flow, "code": code})).expect(StatusCode::OK);
    let second = signed_in.token();
    assert_eq!(api.me(&second).expect(StatusCode::OK).body["username"], "alice");
    // the FLOW is spent, and the step's code with it
    api.post("/sign-in/two-factor", json!({"flow": flow, "code": code}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    let flow = api.sign_in("alice", PASSWORD).expect(StatusCode::OK).body["two_factor"].as_str().unwrap().to_owned();
    api.post("/sign-in/two-factor", json!({"flow": flow, "code": code}))
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    app.clock.advance(secs(4));
    let by_recovery =
        api.post("/sign-in/two-factor", json!({"flow": flow, "code": recovery[0].as_str()})).expect(StatusCode::OK);
    by_recovery.token();
}
