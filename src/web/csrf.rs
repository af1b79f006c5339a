//! CSRF: a signed double-submit cookie, bound to the session once signed in.
//!
//! Every visitor gets a random CSRF cookie (`flex_csrf`, named in [`super::Cookies`]; HttpOnly;
//! no database row, so anonymous page views cost no storage). Forms carry `csrf_token` = HMAC(secret, cookie). A POST passes only
//! if the cookie was already there and the token matches it; when signed in, the cookie must
//! also be the one the session was bound to at sign-in, so a cookie planted by someone else
//! cannot be used against a signed-in user. Anything else is 403 before the handler runs.

use actix_session::SessionExt as _;
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt as _;
use subtle::ConstantTimeEq as _;

use super::error::error_page;
use super::visitor::signed_in_chrome;
use super::{AppState, Cookies};

pub const FIELD: &str = "csrf_token";

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
        let token = url::form_urlencoded::parse(&body).find(|(k, _)| k == FIELD).map(|(_, v)| v.into_owned());
        let expected = token_for(&state, &secret);
        let token_ok = token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
        let session = req.get_session();
        let signed_in = session.get::<i64>("user_id").ok().flatten().is_some();
        let bound_ok = !signed_in || session.get::<String>("csrf").ok().flatten().is_some_and(|s| s == secret);
        if fresh || !token_ok || !bound_ok {
            tracing::info!(path = req.path(), "refused: missing or wrong CSRF token");
            // a signed-in visitor still gets the header with the sign-out button
            let chrome = if bound_ok { signed_in_chrome(req.request(), &state).await } else { None };
            let response = error_page(StatusCode::FORBIDDEN, chrome, None);
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

/// The hidden-field value for this request's forms.
pub fn form_token(req: &HttpRequest, state: &AppState) -> String {
    let secret = req.extensions().get::<CsrfSecret>().map(|s| s.0.clone()).unwrap_or_default();
    token_for(state, &secret)
}

impl FromRequest for CsrfSecret {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Ok(req
            .extensions()
            .get::<CsrfSecret>()
            .cloned()
            .unwrap_or_else(|| CsrfSecret(new_secret()))))
    }
}
