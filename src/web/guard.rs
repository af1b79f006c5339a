//! Middleware that guards every request, outermost first: security headers and error pages,
//! the body's size and arrival time, and the per-IP limit on POSTs. (CSRF is in `csrf.rs`.)

use std::future::poll_fn;
use std::net::{IpAddr, Ipv6Addr};
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
use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use futures_core::Stream as _;
use tokio::time::{Instant, timeout_at};

use super::error::{AppError, error_page, refusal_page};
use super::views::ErrorView;
use super::{AppState, api, csrf};
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::{Pool, ip_limits};
use crate::metrics::{self, Throttle};
use crate::secret::SecretKey;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers on every response (errors too), and our own page for any error response that a
/// lower layer answered in plain text (a framework 400, a 500 from a failed task…).
pub async fn headers(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let is_static = req.path().starts_with("/static/");
    // The JSON API reads no cookie (so no session or CSRF cookie reaches any layer below) and
    // sets none; its refusals are JSON.
    let is_api = api::is_api_path(req.path());
    if is_api {
        req.headers_mut().remove(header::COOKIE);
    }
    let https = req.app_data::<web::Data<AppState>>().is_some_and(|s| s.settings.is_https());
    let mut response = match next.call(req).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(e) => {
            // An error a lower layer did not turn into a response: answer with our page, with
            // the headers (the framework renders the response carried by an InternalError).
            let status = e.as_response_error().status_code();
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), error = %e, "request failed");
            }
            let mut page = if is_api { api::status_error(status, None) } else { error_page(status, None, None) };
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
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_api {
        if (status.is_client_error() || status.is_server_error()) && !is_json {
            // a refusal made outside the API's handlers (413, 408, the per-IP 429, a framework's 4xx)
            let retry_after =
                response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), path = response.request().path(), "request failed");
            }
            response = response.into_response(api::status_error(status, retry_after)).map_into_boxed_body();
        }
        response.headers_mut().remove(header::SET_COOKIE);
    } else if (status.is_server_error() || status.is_client_error() && !is_json) && !is_html {
        // (a JSON 4xx is a handler's own refusal to a script, the passkey calls; a 5xx is
        // always this page, whatever made it)
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
/// over a minute, kept in the database so that every instance of the deployment shares it.
/// Clients are counted per IPv4 address or IPv6 /64, under a keyed hash of it.
#[derive(Clone)]
pub struct IpLimit {
    /// `None`: turned off (`FLEX_USER_IP_RATE_LIMIT=0`), and then no database work at all.
    gcra: Option<Gcra>,
    trusted_proxies: Arc<Vec<IpAddr>>,
    secret: SecretKey,
    pool: Pool,
    clock: Arc<dyn Clock>,
}

impl IpLimit {
    pub fn new(settings: &Settings, pool: Pool, clock: Arc<dyn Clock>) -> Self {
        Self {
            gcra: NonZeroU32::new(settings.ip_rate_limit).map(Gcra::per_minute),
            trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
            secret: settings.secret_key.clone(),
            pool,
            clock,
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

    /// Spends one POST of this client's bucket: `Ok(Err(seconds to wait))` when none is left.
    /// The database work runs on a blocking thread.
    pub async fn check(&self, req: &actix_web::HttpRequest) -> Result<Result<(), u64>, AppError> {
        let (Some(gcra), Some(ip)) = (self.gcra, self.client_ip(req)) else { return Ok(Ok(())) };
        let key = self.secret.keyed_hash("ip-limit", bucket(ip).as_bytes());
        let (pool, now) = (self.pool.clone(), self.clock.now());
        let taken = web::block(move || -> anyhow::Result<_> {
            let mut conn = pool.get().context("per-IP limit: no database connection")?;
            ip_limits::take(&mut conn, &key, now, |tat| gcra.step(tat, now)).context("per-IP limit")
        })
        .await??;
        // `Retry-After`: whole seconds, rounded up, at least 1
        Ok(taken.map_err(|wait| (wait.num_microseconds().unwrap_or(i64::MAX).max(0) as u64).div_ceil(1_000_000).max(1)))
    }

    /// Forgets clients whose bucket is full again (from the housekeeping tick).
    pub async fn prune(&self) -> anyhow::Result<usize> {
        if self.gcra.is_none() {
            return Ok(0);
        }
        let (pool, now) = (self.pool.clone(), self.clock.now());
        web::block(move || Ok(ip_limits::prune(&mut *pool.get()?, now)?)).await?
    }
}

/// The bucket a client counts against: its IPv4 address, or its IPv6 /64 (the usual allocation
/// of one subscriber, so walking through the addresses of a /64 gains nothing). An IPv4 address
/// mapped into IPv6 (a dual-stack socket) counts as that IPv4 address.
fn bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{}/64", Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
    }
}

/// The generic cell rate algorithm: one request every `interval`, with a burst of `limit`
/// (`tolerance` = interval × (limit − 1)). A client's state is one time, its tat: a request at
/// `now` conforms when tat − now ≤ tolerance, and then moves tat to max(tat, now) + interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    interval: TimeDelta,
    tolerance: TimeDelta,
}

impl Gcra {
    fn per_minute(limit: NonZeroU32) -> Gcra {
        let interval = TimeDelta::microseconds(60_000_000 / i64::from(limit.get()));
        Gcra { interval, tolerance: interval * (limit.get() as i32 - 1) }
    }

    /// The tat after a request at `now`, or how much too early it is.
    fn step(&self, tat: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeDelta> {
        let tat = tat.map_or(now, |tat| tat.max(now));
        let early = tat - now - self.tolerance;
        if early > TimeDelta::zero() { Err(early) } else { Ok(tat + self.interval) }
    }
}

pub async fn ip_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // PATCH too: the JSON API changes identifiers with it (and checks a password)
    if (req.method() == Method::POST || req.method() == Method::PATCH)
        && let Some(state) = req.app_data::<web::Data<AppState>>()
    {
        match state.ip_limit.check(req.request()).await {
            Ok(Ok(())) => {}
            Ok(Err(retry_after_secs)) => {
                metrics::throttle_refusal(Throttle::IpLimit);
                let ip = state.ip_limit.client_ip(req.request());
                tracing::info!(ip = ip.map(tracing::field::display), path = req.path(), "throttled: per-IP POST limit");
                let form_token = csrf::refusal_token(req.request(), state);
                let page = refusal_page(
                    req.request(),
                    &state.flows,
                    StatusCode::TOO_MANY_REQUESTS,
                    form_token,
                    Some(retry_after_secs),
                )
                .await;
                return Ok(req.into_response(page).map_into_right_body());
            }
            Err(e) => return Ok(req.into_response(e.error_response()).map_into_right_body()),
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(1_800_000_000_000_000 + micros).unwrap()
    }

    #[test]
    fn a_bucket_of_the_limit_refilled_evenly_over_a_minute() {
        let gcra = Gcra::per_minute(NonZeroU32::new(3).unwrap());
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra.step(tat, at(0)).expect("the burst"));
        }
        assert_eq!(gcra.step(tat, at(0)), Err(TimeDelta::seconds(20)), "one request every 20 s");
        assert_eq!(gcra.step(tat, at(19_999_999)), Err(TimeDelta::microseconds(1)));
        tat = Some(gcra.step(tat, at(20_000_000)).expect("refilled by one"));
        assert!(gcra.step(tat, at(20_000_000)).is_err());
        // a long pause refills the bucket to the limit, never beyond
        let later = at(3_600_000_000);
        for _ in 0..3 {
            tat = Some(gcra.step(tat, later).unwrap());
        }
        assert!(gcra.step(tat, later).is_err());
    }

    #[test]
    fn ipv4_per_address_and_ipv6_per_64() {
        let b = |ip: &str| bucket(ip.parse().unwrap());
        assert_eq!(b("192.0.2.7"), "192.0.2.7");
        assert_eq!(b("::ffff:192.0.2.7"), "192.0.2.7", "IPv4 mapped into IPv6 is IPv4");
        assert_eq!(b("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(b("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(b("2001:db8:1:3::1"), b("2001:db8:1:2::1"));
    }
}
