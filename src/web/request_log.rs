//! One span per request, outermost: method, path and a request id; one line when it is
//! answered, with its status and latency (at debug level only for a GET or HEAD that
//! went well). Every line logged while answering (a 500's
//! error too) carries the span's fields, so it leads back to its request.
//!
//! The path only: never the query string (a `next` can carry anything), headers or cookies, so
//! the span holds no session id, password or code.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{Error, HttpMessage as _};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

/// The span of `tracing_actix_web::TracingLogger` (its default records the query string).
pub struct RequestSpan;

/// When the request arrived, for its latency.
struct Started(Instant);

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(req: &ServiceRequest) -> Span {
        req.extensions_mut().insert(Started(Instant::now()));
        // set by TracingLogger just before this call
        // Status and latency go on the closing line, not into the span: every field recorded
        // into a span is formatted again, and this runs on every request.
        match req.extensions().get::<RequestId>().copied() {
            Some(id) => tracing::info_span!("request", method = %req.method(), path = %req.path(), request_id = %id),
            None => tracing::info_span!("request", method = %req.method(), path = %req.path()),
        }
    }

    fn on_request_end<B: MessageBody>(_span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, started, read_only) = match outcome {
            Ok(response) => {
                let request = response.request();
                let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
                (response.status(), request.extensions().get::<Started>().map(|s| s.0), read_only)
            }
            Err(error) => (error.as_response_error().status_code(), None, false),
        };
        let status_code = status.as_u16();
        let latency_ms = started.map(|s| s.elapsed().as_millis() as u64);
        // Every change (a POST) and every refusal or failure is an info line; a page view or
        // health check that went well is only a debug one: they are most of the traffic, tell
        // nothing about security, and `GET /metrics` counts them (one line each halved a page's
        // throughput).
        if read_only && (status.is_success() || status.is_redirection()) {
            tracing::debug!(status = status_code, latency_ms, "answered");
        } else {
            tracing::info!(status = status_code, latency_ms, "answered");
        }
    }
}
