//! The error pages: 403, 404, 413, 429, 500.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, Page, html};

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

    /// 503 from load shedding, with the wait (also sent as `Retry-After`).
    pub fn busy(chrome: Option<Chrome>, retry_after_secs: u64) -> Self {
        ErrorView {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                chrome,
                503,
                "Busy right now",
                "Too many people are signing in at this moment, so nothing was done.",
            )
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

impl Page for ErrorView {
    fn page_chrome(&self) -> Option<&Chrome> {
        self.chrome.as_ref()
    }
}
