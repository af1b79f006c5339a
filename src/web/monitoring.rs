//! What an operator watches: `GET /metrics` (Prometheus text format) on its own address,
//! `FLEX_USER_METRICS_BIND`, apart from the site (which answers `/metrics` with 404 like any
//! unknown path); and the middleware that measures each request of the site. Names and labels
//! live in [`crate::metrics`].

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{App, HttpResponse, HttpServer, web};
use diesel::connection::SimpleConnection as _;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock::Clock;
use crate::config::Settings;
use crate::db::Pool;
use crate::delivery::outbox;
use crate::flows::Flows;
use crate::metrics;

/// The text exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The password hashing pool's load, read at each scrape: (threads, hashing now, queued, shed
/// since the start).
pub type HashLoad = Arc<dyn Fn() -> (usize, usize, usize, u64) + Send + Sync>;

/// The hashing pool's load for [`run`], read at each scrape.
pub fn hash_pool_load(flows: &Flows) -> Option<HashLoad> {
    let flows = flows.clone();
    Some(Arc::new(move || {
        let load = flows.accounts.passwords().load();
        (load.threads, load.hashing, load.queued, load.shed)
    }))
}

/// The listener `FLEX_USER_METRICS_BIND` asks for, or `None` when it is unset: then nothing
/// listens for metrics at all. Binding here, before anything starts, makes a taken port a
/// one-line start-up error.
pub fn bind(settings: &Settings) -> Result<Option<TcpListener>, String> {
    let Some(address) = &settings.metrics_bind else { return Ok(None) };
    let listener =
        TcpListener::bind(address).map_err(|e| format!("FLEX_USER_METRICS_BIND: cannot listen on {address}: {e}"))?;
    Ok(Some(listener))
}

/// Serves `GET /metrics`, and nothing else, on `listener` (from [`bind`]); installs the process's
/// recorder if no server did before. `hash_load` is read at each scrape; without it the
/// `hash_*` metrics are absent. Call from inside the actix System that serves the site.
pub fn run(listener: TcpListener, flows: &Flows, hash_load: Option<HashLoad>) -> std::io::Result<Server> {
    let scrape = web::Data::new(Scrape {
        handle: metrics::install(),
        pool: flows.accounts.pool().clone(),
        clock: flows.accounts.clock(),
        hash_load,
    });
    if let Ok(address) = listener.local_addr() {
        tracing::info!(metrics = %address, "serving metrics on http://{address}/metrics");
    }
    let server =
        HttpServer::new(move || App::new().app_data(scrape.clone()).route("/metrics", web::get().to(metrics_page)))
            // a scrape every few seconds needs no more
            .workers(1)
            .listen(listener)?
            .run();
    Ok(server)
}

/// What a scrape reads besides the counters.
struct Scrape {
    handle: &'static PrometheusHandle,
    pool: Pool,
    clock: Arc<dyn Clock>,
    hash_load: Option<HashLoad>,
}

impl Scrape {
    /// Sets the gauges that are read at scrape time, then renders everything. Blocking (one
    /// query on the outbox).
    fn render(&self) -> String {
        // a scrape answers quickly: it does not queue for the pool's full timeout
        let pending = self
            .pool
            .get_timeout(Duration::from_secs(2))
            .map_err(anyhow::Error::from)
            .and_then(|mut conn| Ok(outbox::pending_summary(&mut conn)?));
        match pending {
            Ok((count, oldest)) => {
                let age = oldest.and_then(|t| (self.clock.now() - t).to_std().ok()).unwrap_or_default();
                metrics::record_outbox(count.max(0) as u64, age);
            }
            // the outbox gauges keep their last values; the pool gauges below tell why
            Err(e) => tracing::warn!(error = format!("{e:#}"), "metrics: cannot read the outbox"),
        }
        // after the outbox query, so the scrape's own connection counts as idle again
        let state = self.pool.state();
        metrics::record_db_pool(state.idle_connections, state.connections.saturating_sub(state.idle_connections));
        if let Some(load) = &self.hash_load {
            let (threads, hashing, queued, shed) = load();
            metrics::record_hash_load(threads, hashing, queued, shed);
        }
        self.handle.render()
    }
}

async fn metrics_page(scrape: web::Data<Scrape>) -> HttpResponse {
    let scrape = scrape.into_inner();
    match web::block(move || scrape.render()).await {
        Ok(text) => HttpResponse::Ok().content_type(CONTENT_TYPE).body(text),
        Err(e) => {
            tracing::error!(error = %e, "metrics: the scrape failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// Counts and times each request of the site, by route pattern (never the raw path, so the
/// number of series stays bounded), method and status.
pub async fn measure(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req.match_pattern().unwrap_or_else(|| metrics::UNMATCHED.into());
    let method = method_label(req.method());
    let outcome = next.call(req).await;
    let status = match &outcome {
        Ok(response) => response.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    metrics::http_request(route, method, status.as_u16(), started.elapsed());
    outcome
}

/// The standard methods by name; any other (a client may send any token) as `other`.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|known| *known == method.as_str()).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_closed_set() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}

/// The database check behind `/healthz`, on a thread of its own.
///
/// A health check must answer while the site is flooded: on the workers' blocking threads it
/// would queue behind every request already waiting there (seconds, under a flood of sign-ins),
/// and a load balancer would take a working instance out. Here it waits only for a pool
/// connection, and checks asked for at the same time share one `SELECT 1`.
#[derive(Clone)]
pub struct HealthProbe {
    ask: std::sync::mpsc::SyncSender<()>,
    /// (how many checks have finished, whether the last one reached the database)
    answers: tokio::sync::watch::Receiver<(u64, bool)>,
}

impl HealthProbe {
    /// How long a check waits for a pool connection before it says the database is unavailable.
    const CONNECTION_WAIT: Duration = Duration::from_secs(2);

    pub fn start(pool: Pool) -> HealthProbe {
        // room for one request: a check asked for while one is pending joins it
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let (tell, answers) = tokio::sync::watch::channel((0, false));
        std::thread::Builder::new()
            .name("health-probe".into())
            .spawn(move || {
                let mut done = 0;
                while asked.recv().is_ok() {
                    let alive = pool
                        .get_timeout(Self::CONNECTION_WAIT)
                        .ok()
                        .is_some_and(|mut c| c.batch_execute("SELECT 1").is_ok());
                    done += 1;
                    if tell.send((done, alive)).is_err() {
                        return; // every probe is gone
                    }
                }
            })
            .expect("a thread for the health probe");
        HealthProbe { ask, answers }
    }

    /// Whether the database answers: from a check that finished after this call began.
    pub async fn alive(&self) -> bool {
        let mut answers = self.answers.clone();
        let seen = answers.borrow_and_update().0;
        // full means a check is already asked for, and its answer will do
        let _ = self.ask.try_send(());
        let fresh = answers.wait_for(|(done, _)| *done > seen);
        match tokio::time::timeout(Self::CONNECTION_WAIT + Duration::from_secs(1), fresh).await {
            Ok(Ok(answer)) => answer.1,
            _ => false,
        }
    }
}
