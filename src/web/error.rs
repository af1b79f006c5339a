//! Error policy: a person sees a page that says what happened and what to do, never internals.
//! Unexpected failures are logged in full and answered with a 500 page that says nothing of them.
//! Validation failures are not errors here: handlers re-show their form with 422.
//! Causes are kept (`.context(..)`, `.into()`), never flattened into a string, so the log line
//! of a 500 (inside the request's span: method, path, request id) holds the whole chain.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::session::UserSession;
use super::views::{Chrome, ErrorView};
use crate::accounts::Busy;
use crate::flows::Flows;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Not a failure: the request belongs elsewhere first (sign in; back to the account).
    /// A handler can stop with `?` and answer `303 See Other`.
    #[error("see other: {0}")]
    Redirect(String),
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("request body too large")]
    TooLarge,
    #[error("too many requests")]
    TooMany { retry_after_secs: u64 },
    /// The password-hashing pool is full: shed, not queued.
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        // a job that waited past the pool's bound comes back through the flow as an error
        match e.downcast::<Busy>() {
            Ok(busy) => AppError::Busy(busy),
            Err(e) => AppError::Unexpected(e),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        AppError::Unexpected(anyhow::Error::new(e).context("blocking task failed"))
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        AppError::Unexpected(e.into())
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Redirect(_) => StatusCode::SEE_OTHER,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::Redirect(location) = self {
            return HttpResponse::SeeOther()
                .insert_header((actix_web::http::header::LOCATION, location.as_str()))
                .finish();
        }
        if let AppError::Unexpected(e) = self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let retry_after = match self {
            AppError::TooMany { retry_after_secs } | AppError::Busy(Busy { retry_after_secs }) => {
                Some(*retry_after_secs)
            }
            _ => None,
        };
        error_page(self.status_code(), None, retry_after)
    }
}

/// The page for an error status; `chrome` when the handler knows the visitor.
pub fn error_page(status: StatusCode, chrome: Option<Chrome>, retry_after_secs: Option<u64>) -> HttpResponse {
    let view = match status.as_u16() {
        403 => ErrorView::forbidden(chrome),
        404 => ErrorView::not_found(chrome),
        413 => ErrorView::payload_too_large(chrome),
        429 => ErrorView::too_many_requests(chrome, retry_after_secs.unwrap_or(1)),
        400 => ErrorView::new(chrome, 400, "Bad request", "The form could not be read. Go back and try again."),
        405 => ErrorView::new(chrome, 405, "Not allowed", "This page cannot be used that way."),
        503 if retry_after_secs.is_some() => ErrorView::busy(chrome, retry_after_secs.unwrap_or(1)),
        503 => ErrorView::new(
            chrome,
            503,
            "Temporarily unavailable",
            "The service cannot answer right now. Please try again in a moment.",
        ),
        code if code >= 500 => ErrorView { status: code, ..ErrorView::internal(chrome) },
        code => ErrorView::new(chrome, code, "Request refused", "This request could not be accepted."),
    };
    view.response()
}

/// The page for a refusal made outside a handler (by a middleware), with the signed-in header
/// when this session has a signed-in user, so the page keeps its sign-out button. `form_token`
/// is the CSRF token for that button's form; without one the page has no signed-in header.
pub async fn refusal_page(
    req: &HttpRequest,
    flows: &Flows,
    status: StatusCode,
    form_token: Option<String>,
    retry_after_secs: Option<u64>,
) -> HttpResponse {
    let chrome = match form_token {
        Some(token) => signed_in_chrome(req, flows, token).await,
        None => None,
    };
    error_page(status, chrome, retry_after_secs)
}

/// The signed-in header, or `None` for anonymous visitors. A failure to load the user only
/// costs the header: the refusal is still the answer.
async fn signed_in_chrome(req: &HttpRequest, flows: &Flows, form_token: String) -> Option<Chrome> {
    match UserSession::of(req).user(flows).await {
        Ok(user) => user.map(|user| Chrome::signed_in(form_token, user.display_name())),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "a refusal page goes without the signed-in header");
            None
        }
    }
}
