//! Middleware that guards every request, outermost first: security headers and error pages,
//! the body's size and arrival time, and the per-IP limit on POSTs. (CSRF is in `csrf.rs`.)

use std::future::poll_fn;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError as _, web};
use futures_core::Stream as _;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::{Instant, timeout_at};

use super::AppState;
use super::error::{AppError, error_page};
use super::views::ErrorView;
use super::visitor::signed_in_chrome;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers on every response (errors too), and our own page for any error response that a
/// lower layer answered in plain text (a framework 400, a 500 from a failed task…).
pub async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let is_static = req.path().starts_with("/static/");
    let https = req.app_data::<web::Data<AppState>>().is_some_and(|s| s.settings.public_url.scheme() == "https");
    let mut response = match next.call(req).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(e) => {
            // An error a lower layer did not turn into a response: answer with our page, with
            // the headers (the framework renders the response carried by an InternalError).
            let status = e.as_response_error().status_code();
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), error = %e, "request failed");
            }
            let mut page = error_page(status, None, None);
            secure(page.headers_mut(), https, false);
            return Err(actix_web::error::InternalError::from_response(e, page).into());
        }
    };
    let status = response.status();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if (status.is_client_error() || status.is_server_error()) && !is_html {
        let retry_after =
            response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), path = response.request().path(), "request failed");
        }
        let page = error_page(status, None, retry_after);
        response = response.into_response(page).map_into_boxed_body();
    }
    secure(response.headers_mut(), https, is_static);
    Ok(response)
}

fn secure(h: &mut actix_web::http::header::HeaderMap, https: bool, is_static: bool) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if https {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// How long a request body may take to arrive, counted from its headers.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The body, before anything else runs: 413 when it is over [`BODY_LIMIT`] (declared or not),
/// 408 when it has not fully arrived [`BODY_TIMEOUT`] after the headers. Reading it here, at
/// most the limit and one chunk more, means a stalled or endless upload holds a connection for
/// 10 seconds at most, and the layers below find the body already in memory.
pub async fn body_limit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let deadline = Instant::now() + BODY_TIMEOUT;
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut payload = req.parts_mut().1.take();
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        return Ok(refuse(req, payload, AppError::TooLarge.error_response()));
    }
    let has_body = declared.is_some_and(|len| len > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        req.set_payload(payload);
        return Ok(next.call(req).await?.map_into_left_body());
    }
    match timeout_at(deadline, read_body(&mut payload)).await {
        Ok(Ok(body)) => req.set_payload(Payload::from(body)),
        Ok(Err(Unread::TooLarge)) => return Ok(refuse(req, payload, AppError::TooLarge.error_response())),
        Ok(Err(Unread::Broken(e))) => {
            // a malformed chunk, a client gone midway
            tracing::info!(error = %e, path = req.path(), "refused: unreadable request body");
            let page = error_page(actix_web::Error::from(e).as_response_error().status_code(), None, None);
            return Ok(refuse(req, payload, page));
        }
        Err(_elapsed) => {
            tracing::info!(path = req.path(), "refused: request body did not arrive in time");
            let page = ErrorView::new(
                None,
                408,
                "Request timed out",
                "What was sent did not arrive in time, so nothing was changed. Please try again.",
            );
            return Ok(refuse(req, payload, page.response()));
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

enum Unread {
    TooLarge,
    Broken(PayloadError),
}

/// The whole body, or `TooLarge` as soon as it passes [`BODY_LIMIT`].
async fn read_body(payload: &mut Payload) -> Result<web::Bytes, Unread> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = poll_fn(|cx| Pin::new(&mut *payload).poll_next(cx)).await {
        let chunk = chunk.map_err(Unread::Broken)?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(Unread::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Answers `response` and closes the connection after it, since the rest of the body would
/// otherwise still be on the wire. `Connection: close` alone is not enough: once the reader of
/// a chunked body is dropped, actix drains the rest before closing, however slowly it comes
/// (or never). It closes at once when the reader is still alive as the response ends, so the
/// response's body holds it till then.
fn refuse<B>(req: ServiceRequest, unread: Payload, mut response: HttpResponse) -> ServiceResponse<EitherBody<B>> {
    response.head_mut().set_connection_type(ConnectionType::Close);
    let response = response.map_body(|_, body| BoxBody::new(HoldingBody { body, _unread: unread }));
    req.into_response(response).map_into_right_body()
}

/// A response body that keeps the request's unread payload alive as long as it is sent.
struct HoldingBody {
    body: BoxBody,
    _unread: Payload,
}

impl MessageBody for HoldingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// The per-IP limit on POSTs: a bucket of `FLEX_USER_IP_RATE_LIMIT` requests refilled evenly
/// over a minute, kept in this process's memory.
#[derive(Clone)]
pub struct IpLimit {
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    trusted_proxies: Arc<Vec<IpAddr>>,
}

impl IpLimit {
    pub fn new(per_minute: u32, trusted_proxies: Vec<IpAddr>) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))));
        Self { limiter, trusted_proxies: Arc::new(trusted_proxies) }
    }

    /// Forgets addresses whose bucket is full again (bounded memory under a spray of addresses).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The client: the socket's peer, or behind a trusted proxy the nearest address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, req: &actix_web::HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .rev()
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .find(|ip| !self.trusted_proxies.contains(ip))
            .or(Some(peer))
    }

    /// `Err(seconds to wait)` when this client has no POST left.
    pub fn check(&self, req: &actix_web::HttpRequest) -> Result<(), u64> {
        let (Some(limiter), Some(ip)) = (&self.limiter, self.client_ip(req)) else { return Ok(()) };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_millis().div_ceil(1000).max(1) as u64
        })
    }
}

pub async fn ip_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.method() == Method::POST
        && let Some(state) = req.app_data::<web::Data<AppState>>()
        && let Err(retry_after_secs) = state.ip_limit.check(req.request())
    {
        tracing::info!(ip = ?state.ip_limit.client_ip(req.request()), path = req.path(), "throttled: per-IP POST limit");
        let chrome = signed_in_chrome(req.request(), state).await;
        let page = error_page(StatusCode::TOO_MANY_REQUESTS, chrome, Some(retry_after_secs));
        return Ok(req.into_response(page).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}
