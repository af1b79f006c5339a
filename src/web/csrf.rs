//! CSRF: a signed double-submit cookie, bound to the session once signed in.
//!
//! Every visitor gets a random CSRF cookie (`flex_csrf`, named in [`super::Cookies`]; HttpOnly;
//! no database row, so anonymous page views cost no storage). Forms carry `csrf_token` = HMAC(secret, cookie)
//! (a script posting JSON sends it in the `X-CSRF-Token` header, read from the page's form). A POST passes only
//! if the cookie was already there and the token matches it; when signed in, the cookie must
//! also be the one the session was bound to at sign-in, so a cookie planted by someone else
//! cannot be used against a signed-in user. Anything else is 403 before the handler runs.

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpRequest, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt as _;
use subtle::ConstantTimeEq as _;

use super::error::{error_page, refusal_page};
use super::session::UserSession;
use super::{AppState, Cookies};

pub const FIELD: &str = "csrf_token";
/// The header that carries the token instead of the field, for requests with a JSON body.
pub const HEADER: &str = "x-csrf-token";

/// This request's CSRF cookie value (existing or just made).
#[derive(Debug, Clone)]
pub struct CsrfSecret(pub String);

/// A new cookie value: 32 random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn well_formed(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn cookie(value: &str, cookies: &Cookies) -> Cookie<'static> {
    Cookie::build(cookies.csrf, value.to_owned())
        .path("/")
        .http_only(true)
        .secure(cookies.secure)
        .same_site(SameSite::Lax)
        .finish()
}

pub fn token_for(state: &AppState, secret: &str) -> String {
    state.settings.secret_key.keyed_hash("csrf", secret.as_bytes())
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if super::api::is_api_path(req.path()) {
        // the JSON API reads and sets no cookie: a bearer token is nothing a browser sends by itself
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let state = req.app_data::<web::Data<AppState>>().expect("AppState").clone();
    let existing = req.cookie(state.cookies.csrf).map(|c| c.value().to_owned()).filter(|v| well_formed(v));
    let fresh = existing.is_none();
    let secret = existing.unwrap_or_else(new_secret);
    req.extensions_mut().insert(CsrfSecret(secret.clone()));

    let mut req = req;
    if req.method() == Method::POST {
        let body = match req.extract::<web::Bytes>().await {
            Ok(body) => body,
            Err(e) => {
                let status = e.as_response_error().status_code();
                let response = error_page(status, None, None);
                return Ok(req.into_response(response).map_into_boxed_body().map_into_right_body());
            }
        };
        // a form's hidden field, or (scripts posting JSON: static/passkey.js) the header
        let token = req
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| url::form_urlencoded::parse(&body).find(|(k, _)| k == FIELD).map(|(_, v)| v.into_owned()));
        let expected = token_for(&state, &secret);
        let token_ok = token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
        let bound_ok = UserSession::of(req.request()).accepts_csrf(&secret);
        if fresh || !token_ok || !bound_ok {
            tracing::info!(path = req.path(), "refused: missing or wrong CSRF token");
            // a signed-in visitor still gets the header with the sign-out button (not with a
            // cookie the session was not bound to: that form would be refused too)
            let form_token = bound_ok.then_some(expected);
            let response = refusal_page(req.request(), &state.flows, StatusCode::FORBIDDEN, form_token, None).await;
            return Ok(req.into_response(response).map_into_boxed_body().map_into_right_body());
        }
        req.set_payload(actix_web::dev::Payload::from(body));
    }

    let mut response = next.call(req).await?;
    let handler_set_one = response.response().cookies().any(|c| c.name() == state.cookies.csrf);
    if fresh && !handler_set_one {
        response.response_mut().add_cookie(&cookie(&secret, &state.cookies))?;
    }
    Ok(response.map_into_left_body())
}

/// The hidden-field value for this request's forms (inside the middleware, which always sets
/// the secret; anywhere else a token for a random secret, which nothing accepts).
pub fn form_token(req: &HttpRequest, state: &AppState) -> String {
    let secret = req.extensions().get::<CsrfSecret>().map(|s| s.0.clone()).unwrap_or_else(new_secret);
    token_for(state, &secret)
}

/// The form token for a refusal page made by a middleware that may run before this one: from
/// the secret this middleware chose, else from the visitor's cookie; `None` without either.
pub fn refusal_token(req: &HttpRequest, state: &AppState) -> Option<String> {
    let secret = req
        .extensions()
        .get::<CsrfSecret>()
        .map(|s| s.0.clone())
        .or_else(|| req.cookie(state.cookies.csrf).map(|c| c.value().to_owned()))?;
    Some(token_for(state, &secret))
}
