//! The JSON API, `/api/v1` (CONTRACT.md, "JSON API"): the pages' accounts, rules, throttles and
//! limits for apps and scripts, through the same flows.
//!
//! It sits behind the site's own middleware, in the pages' order: security headers, 413 (and
//! 408), the per-IP limit (429), then here: 415 for a body that is not JSON, then the handler.
//! For `/api/v1` the guard reads no cookie and sets none, CSRF does not apply (nothing a browser
//! sends by itself can authenticate), and every refusal made outside a handler is answered in
//! this module's JSON error shape ([`status_error`]).
//!
//! Error policy: `{"error": CODE, "message": TEXT}`, plus `fields` for invalid input and
//! `retry_after` (with `Retry-After`) on 429. Unexpected failures are logged and answered 500
//! `internal` with no internals.

mod handlers;
mod spec;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::AppError;
use super::views::FormErrors;
use crate::accounts::{Busy, FieldErrors, User};

/// Where the API lives.
pub const PREFIX: &str = "/api/v1";

/// Whether `path` is the API's (so refusals are JSON and no cookie is read or set).
pub fn is_api_path(path: &str) -> bool {
    path.strip_prefix(PREFIX).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The `/api/v1` scope: the routes, the JSON-only check, and 404 `not_found` for the rest.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PREFIX)
            .wrap(from_fn(json_only))
            .configure(handlers::routes)
            .service(spec::openapi_json)
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}

/// 415 for a request whose body is not JSON (`application/json`, UTF-8). A request without a
/// body needs no content type.
async fn json_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let headers = req.headers();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let has_body = declared.is_some_and(|len| len > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body && !is_json(headers.get(header::CONTENT_TYPE)) {
        let response = ApiError::UnsupportedMediaType.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// `application/json`, with no charset or `charset=utf-8`.
fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let mut parts = value.split(';').map(str::trim);
    if !parts.next().is_some_and(|essence| essence.eq_ignore_ascii_case("application/json")) {
        return false;
    }
    parts.filter(|p| !p.is_empty()).all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    })
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid`, `invalid_credentials`, `unauthorized`, `throttled`, `not_found`,
    /// `unsupported_media_type`, `bad_request`, `payload_too_large`, `request_timeout`,
    /// `method_not_allowed`, `unavailable` or `internal`.
    #[schema(example = "invalid")]
    pub error: &'static str,
    pub message: String,
    /// For `invalid`: a message per field of the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// For `throttled`: seconds to wait (as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: a message per field, and form-wide messages in `message`.
    #[error("invalid")]
    Invalid { message: String, fields: BTreeMap<String, String> },
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("unauthorized")]
    Unauthorized,
    #[error("throttled")]
    Throttled { retry_after_secs: u64, message: String },
    #[error("not found")]
    NotFound,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error(transparent)]
    Busy(Busy),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl ApiError {
    /// 422 with one field's message.
    pub fn field(name: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::Invalid { message: message.clone(), fields: BTreeMap::from([(name.to_owned(), message)]) }
    }

    /// 429 for a backoff or limit: `retry_after_secs` and a sentence that says it.
    pub fn throttled(retry_after_secs: u64, what: &str) -> ApiError {
        ApiError::Throttled {
            retry_after_secs,
            message: format!("{what} Try again in {}.", super::pages::seconds(retry_after_secs)),
        }
    }
}

impl From<&FormErrors> for ApiError {
    fn from(errors: &FormErrors) -> ApiError {
        let fields: BTreeMap<String, String> =
            errors.fields().map(|(name, message)| (name.to_owned(), message.to_owned())).collect();
        let mut lines = errors.generals().to_vec();
        if lines.is_empty() {
            lines.extend(fields.values().cloned());
        }
        ApiError::Invalid { message: lines.join(" "), fields }
    }
}

impl From<&FieldErrors> for ApiError {
    fn from(errors: &FieldErrors) -> ApiError {
        ApiError::from(&super::pages::form_errors(errors))
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        match e {
            AppError::Busy(busy) => ApiError::Busy(busy),
            AppError::Unexpected(e) => ApiError::Unexpected(e),
            AppError::NotFound => ApiError::NotFound,
            AppError::TooMany { retry_after_secs } => ApiError::throttled(retry_after_secs, "Too many requests."),
            other => ApiError::Unexpected(anyhow::Error::new(other).context("a page's answer inside the API")),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::from(AppError::from(e))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidCredentials | ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (error, message, fields, retry_after) = match self {
            ApiError::Invalid { message, fields } => ("invalid", message.clone(), Some(fields.clone()), None),
            ApiError::InvalidCredentials => (
                "invalid_credentials",
                "That username, email or phone number and password do not match an account.".to_owned(),
                None,
                None,
            ),
            ApiError::Unauthorized => {
                ("unauthorized", "Send a live token as `Authorization: Bearer TOKEN`.".to_owned(), None, None)
            }
            ApiError::Throttled { retry_after_secs, message } => {
                ("throttled", message.clone(), None, Some(*retry_after_secs))
            }
            ApiError::UnsupportedMediaType => (
                "unsupported_media_type",
                "Send the body as JSON, with `Content-Type: application/json`.".to_owned(),
                None,
                None,
            ),
            ApiError::BadRequest(message) => ("bad_request", (*message).to_owned(), None, None),
            ApiError::Busy(busy) => (
                "unavailable",
                "The service is busy. Please try again in a moment.".to_owned(),
                None,
                Some(busy.retry_after_secs),
            ),
            ApiError::NotFound => return status_error(StatusCode::NOT_FOUND, None),
            ApiError::Unexpected(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                return status_error(StatusCode::INTERNAL_SERVER_ERROR, None);
            }
        };
        respond(self.status_code(), ErrorBody { error, message, fields, retry_after })
    }
}

fn respond(status: StatusCode, body: ErrorBody) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if let Some(secs) = body.retry_after {
        response.insert_header((header::RETRY_AFTER, secs));
    }
    if status == StatusCode::UNAUTHORIZED && body.error == "unauthorized" {
        response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    response.json(body)
}

/// The JSON error for a status alone: what a refusal made outside a handler (413, 408, the
/// per-IP 429, a framework's 4xx, a 500) becomes on an API path.
pub fn status_error(status: StatusCode, retry_after_secs: Option<u64>) -> HttpResponse {
    let (error, message) = match status.as_u16() {
        400 => ("bad_request", "The request could not be read."),
        401 => ("unauthorized", "Send a live token as `Authorization: Bearer TOKEN`."),
        404 => ("not_found", "There is nothing here."),
        405 => ("method_not_allowed", "This route cannot be used with that method."),
        408 => ("request_timeout", "What was sent did not arrive in time, so nothing was changed."),
        413 => ("payload_too_large", "The request body is over 64 KiB; nothing was read."),
        415 => ("unsupported_media_type", "Send the body as JSON, with `Content-Type: application/json`."),
        422 => ("invalid", "The request could not be accepted."),
        429 => ("throttled", "Too many requests."),
        503 => ("unavailable", "The service cannot answer right now. Please try again in a moment."),
        code if code >= 500 => ("internal", "Something went wrong on our side. Nothing was changed."),
        _ => ("bad_request", "This request could not be accepted."),
    };
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS => Some(retry_after_secs.unwrap_or(1)),
        _ => retry_after_secs,
    };
    let message = match retry_after {
        Some(secs) if status == StatusCode::TOO_MANY_REQUESTS => {
            format!("{message} Try again in {}.", super::pages::seconds(secs))
        }
        _ => message.to_owned(),
    };
    respond(status, ErrorBody { error, message, fields: None, retry_after })
}

/// A JSON object body, parsed: 400 `bad_request` when it is not JSON (or missing), 422
/// `invalid` when it is JSON of the wrong shape, with the field that was wrong.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|_| ApiError::BadRequest("The request body could not be read."))?;
            parse_body(&body).map(ApiJson)
        })
    }
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("This request needs a JSON object as its body."));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ApiError::BadRequest("The request body is not valid JSON."))?;
    if !value.is_object() {
        return Err(ApiError::Invalid { message: "The body must be a JSON object.".into(), fields: BTreeMap::new() });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let message = format!("Not accepted here: {}.", e.inner());
        if field == "." {
            ApiError::Invalid { message, fields: BTreeMap::new() }
        } else {
            ApiError::field(&field, message)
        }
    })
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value: for `PATCH`, where
/// absent keeps and `null` removes. Use with `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The signed-in user of a request, from `Authorization: Bearer TOKEN` (no cookie is read):
/// 401 `unauthorized` without a live token of an active account.
pub struct Bearer {
    pub user: User,
    pub token: String,
}

impl FromRequest for Bearer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().expect("AppState").clone();
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
        let ctx = crate::web::session::client_context(req, &state);
        Box::pin(async move {
            let Some(token) = token.filter(|t| !t.is_empty()) else { return Err(ApiError::Unauthorized) };
            let checked = token.clone();
            match state.flow(move |flows| flows.token_user(&checked, &ctx)).await? {
                Some(user) => Ok(Bearer { user, token }),
                None => Err(ApiError::Unauthorized),
            }
        })
    }
}

/// A user, as the API shows one (USER); absent identifiers are `null`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    pub id: i64,
    pub username: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone: Option<String>,
    pub phone_verified: bool,
    /// Whether the account has a usable password (an account made by code sign-in may not).
    pub has_password: bool,
    /// Whether signing in asks for a second factor.
    pub two_factor: bool,
    pub date_joined: chrono::DateTime<chrono::Utc>,
}

impl UserBody {
    /// `user` with the verification of its addresses.
    pub async fn of(state: &AppState, user: &User) -> Result<UserBody, ApiError> {
        let id = user.id;
        let (email, phone, two_factor) = state
            .flow(move |flows| {
                Ok((flows.accounts.email_token(id)?, flows.accounts.phone_token(id)?, flows.has_second_factor_of(id)?))
            })
            .await?;
        let verified = |token: Option<crate::accounts::OtpToken>| token.is_some_and(|t| t.state.verified);
        Ok(UserBody {
            id: user.id,
            username: user.username.as_ref().map(|u| u.as_str().to_owned()),
            email: user.email.as_ref().map(|e| e.as_str().to_owned()),
            email_verified: user.email.is_some() && verified(email),
            phone: user.phone.as_ref().map(|p| p.as_str().to_owned()),
            phone_verified: user.phone.is_some() && verified(phone),
            has_password: user.has_usable_password(),
            two_factor,
            date_joined: user.date_joined,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_prefix_is_the_api() {
        for path in ["/api/v1", "/api/v1/", "/api/v1/me", "/api/v1/x/y"] {
            assert!(is_api_path(path), "{path}");
        }
        for path in ["/", "/api", "/api/v10", "/api/v1x/me", "/sign-in"] {
            assert!(!is_api_path(path), "{path}");
        }
    }

    #[test]
    fn json_is_application_json_in_utf8() {
        let json = |v: &str| is_json(Some(&header::HeaderValue::from_str(v).unwrap()));
        assert!(json("application/json"));
        assert!(json("Application/JSON; charset=UTF-8"));
        assert!(!json("application/json; charset=latin1"));
        assert!(!json("text/plain"));
        assert!(!json("application/x-www-form-urlencoded"));
        assert!(!json("application/jsonx"));
        assert!(!is_json(None));
    }

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, deserialize_with = "present")]
        phone: Option<Option<String>>,
    }

    #[test]
    fn bodies_are_objects_and_wrong_fields_are_named() {
        assert!(matches!(parse_body::<Body>(b""), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse_body::<Body>(b"{\"name\":"), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse_body::<Body>(b"[\"a\"]"), Err(ApiError::Invalid { .. })));
        match parse_body::<Body>(b"{\"name\": 5}") {
            Err(ApiError::Invalid { fields, .. }) => assert!(fields.contains_key("name"), "{fields:?}"),
            other => panic!("{other:?}"),
        }
        let body: Body = parse_body(b"{\"name\":\"a\",\"phone\":null}").unwrap();
        assert_eq!((body.name.as_deref(), body.phone), (Some("a"), Some(None)));
        let body: Body = parse_body(b"{}").unwrap();
        assert_eq!(body.phone, None, "absent is not null");
    }
}
