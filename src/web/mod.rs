//! The HTTP layer: start-up, middleware order and the route table. Handlers (in `pages`) stay
//! thin: parse the form into domain types, call one flow on a blocking thread, answer.

pub mod api;
pub mod browser;
pub mod csrf;
pub mod error;
pub mod guard;
pub mod monitoring;
pub mod pages;
pub mod request_log;
pub mod session;
pub mod views;
pub mod visitor;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_session::SessionMiddleware;
use actix_session::config::{CookieContentSecurity, PersistentSession, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite, time::Duration as CookieDuration};
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::accounts::sessions::SessionLifetime;
use crate::config::Settings;
use crate::delivery::{self, Senders};
use crate::flows::Flows;
use error::AppError;
use guard::IpLimit;
use request_log::RequestSpan;
use session::DbSessionStore;
use visitor::Visitor;

/// Our cookies' names and whether they are `Secure`, decided here once from the scheme of
/// `FLEX_USER_PUBLIC_URL`. Over https the names carry the `__Host-` prefix: a browser then takes
/// the cookie only when it is Secure, for `Path=/` and without a `Domain`, so a sibling
/// subdomain cannot plant a session or CSRF cookie. Over plain http (development) they cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookies {
    pub secure: bool,
    pub session: &'static str,
    pub csrf: &'static str,
    /// The long-lived browser id (`web::browser`).
    pub browser: &'static str,
    /// The trusted-browser cookie of the second sign-in step (`remember`).
    pub trusted: &'static str,
}

impl Cookies {
    pub fn for_settings(settings: &Settings) -> Cookies {
        if settings.is_https() {
            Cookies {
                secure: true,
                session: "__Host-flex_session",
                csrf: "__Host-flex_csrf",
                browser: "__Host-flex_browser",
                trusted: "__Host-flex_trusted",
            }
        } else {
            Cookies {
                secure: false,
                session: "flex_session",
                csrf: "flex_csrf",
                browser: "flex_browser",
                trusted: "flex_trusted",
            }
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub flows: Flows,
    pub settings: Arc<Settings>,
    pub ip_limit: IpLimit,
    pub cookies: Cookies,
    pub health: monitoring::HealthProbe,
}

impl AppState {
    pub fn new(flows: Flows, settings: Settings) -> AppState {
        AppState {
            ip_limit: IpLimit::new(&settings, flows.accounts.pool().clone(), flows.accounts.clock()),
            cookies: Cookies::for_settings(&settings),
            health: monitoring::HealthProbe::start(flows.accounts.pool().clone()),
            flows,
            settings: Arc::new(settings),
        }
    }

    /// Runs flow work on a blocking thread (database work never runs on the async workers); an
    /// unexpected failure comes back as the 500 of [`AppError`].
    pub async fn flow<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Flows) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, AppError> {
        let flows = self.flows.clone();
        Ok(web::block(move || f(&flows)).await??)
    }

    /// [`AppState::flow`] for work that hashes passwords (argon2). It first takes a place in the
    /// hashing pool, before anything is read or counted: when the pool is full the answer is 503
    /// at once, the same for every account, and no throttle has moved.
    pub async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Flows) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, AppError> {
        let admission = self.flows.accounts.passwords().admit()?;
        self.flow(move |flows| {
            let _admission = admission;
            f(flows)
        })
        .await
    }
}

/// After sign-up or sign-in: a new session id bound to a new CSRF secret, a browser cookie if
/// this browser had none (its id is the one the sign-in recorded), and a redirect.
pub(crate) fn signed_in_response(
    state: &AppState,
    visitor: &Visitor,
    user_id: i64,
    location: &str,
) -> Result<HttpResponse, AppError> {
    let secret = csrf::new_secret();
    visitor.session.sign_in(user_id, &secret, state.flows.accounts.now())?;
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, location)).cookie(csrf::cookie(&secret, &state.cookies));
    if visitor.browser.fresh {
        response.cookie(visitor.browser.cookie(&state.cookies, &state.settings.secret_key));
    }
    Ok(response.finish())
}

/// Every first factor (a password, a sign-in code: `method`) calls this once it is proven.
///
/// Without a second factor, or when this browser's trusted-browser cookie vouches for the account
/// at its current factor version, it signs the visitor in ([`signed_in_response`]: a new session
/// id, to `next` or `/account`). Otherwise it stores the half-signed-in state in the session (a
/// new session id, no user: no page of the account opens) and answers 303 to
/// `/sign-in/two-factor`, keeping `next`, for the second step (`pages::two_factor`).
pub(crate) async fn finish_first_factor(
    state: &AppState,
    visitor: &Visitor,
    req: &actix_web::HttpRequest,
    user: crate::accounts::User,
    method: crate::accounts::activity::SignInMethod,
    next: &str,
) -> Result<HttpResponse, AppError> {
    use crate::flows::two_factor::FirstFactorDone;
    let next = visitor::local_path(next).unwrap_or_default().to_owned();
    let trusted = req.cookie(state.cookies.trusted).map(|c| c.value().to_owned());
    let (kept, ctx) = (next.clone(), visitor.context());
    match state.flow(move |flows| flows.after_first_factor(user, method, trusted.as_deref(), &kept, &ctx)).await? {
        FirstFactorDone::SignIn(user) => {
            signed_in_response(state, visitor, user.id, if next.is_empty() { "/account" } else { &next })
        }
        FirstFactorDone::SecondStep(half) => {
            visitor.session.set_half_sign_in(&half)?;
            let location = if next.is_empty() {
                "/sign-in/two-factor".to_owned()
            } else {
                format!("/sign-in/two-factor?next={}", visitor::url_encode(&next))
            };
            Ok(visitor::see_other(&location))
        }
    }
}

/// After sign-out or a reset: a fresh CSRF secret (the session is already purged), a redirect.
pub(crate) fn signed_out_response(state: &AppState, location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .cookie(csrf::cookie(&csrf::new_secret(), &state.cookies))
        .finish()
}

/// Starts serving on `listener` (bind port 0 in tests to get a free one), with this process's
/// delivery worker and housekeeping. Call from inside an actix/tokio runtime.
pub fn run(listener: TcpListener, state: AppState, senders: Senders) -> std::io::Result<Server> {
    let flows = state.flows.clone();
    delivery::worker::spawn(flows.accounts.pool().clone(), senders, flows.accounts.clock(), flows.wake.clone());
    spawn_housekeeping(state.clone());

    let settings = state.settings.clone();
    let store = DbSessionStore::new(
        flows.accounts.pool().clone(),
        flows.accounts.clock(),
        SessionLifetime::from_settings(&settings),
    );
    let key = Key::derive_from(settings.secret_key.expose());
    let cookies = state.cookies;
    let max_age = CookieDuration::seconds(settings.session_max_age.num_seconds());
    let data = web::Data::new(state);

    let server = HttpServer::new(move || {
        let sessions = SessionMiddleware::builder(store.clone(), key.clone())
            .cookie_name(cookies.session.into())
            .cookie_secure(cookies.secure)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_content_security(CookieContentSecurity::Signed)
            .session_lifecycle(
                PersistentSession::default()
                    .session_ttl(max_age)
                    .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
            )
            .build();
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(guard::BODY_LIMIT))
            .app_data(web::FormConfig::default().limit(guard::BODY_LIMIT))
            .configure(api::configure)
            .configure(routes)
            .default_service(web::to(not_found))
            // innermost first. The CSRF cookie is read first (refusal pages need it for their
            // forms), then the session, which the per-IP limit and CSRF both use to give a
            // signed-in visitor's refusal page its sign-out button. The answers still come in
            // the contract's order: 413 (or 408 for a body too slow), 429, 403. Around the
            // session, the request's client (IP address, User-Agent) for the session store to
            // record where a session was used from. `headers`
            // puts the security headers on each of them. Around them, the request's metrics (the
            // final status); around everything, the request's span, so each line logged on the
            // way leads back to its request.
            .wrap(from_fn(csrf::middleware))
            .wrap(from_fn(guard::ip_limit))
            .wrap(sessions)
            .wrap(from_fn(session::client_scope))
            .wrap(from_fn(guard::body_limit))
            .wrap(from_fn(guard::headers))
            .wrap(from_fn(monitoring::measure))
            .wrap(TracingLogger::<RequestSpan>::new())
    })
    // Every database call runs on a worker's blocking threads (`web::block`). actix's default of
    // 256 per worker let a flood of 500 connections start a hundred threads, each with its stack
    // and allocator arena, only to queue for the pool's 16 connections: the threads now match the
    // pool, and further calls wait in the worker's queue instead.
    .worker_max_blocking_threads(BLOCKING_THREADS_PER_WORKER)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Blocking threads per worker (one worker per core): 8 × 2 cores = the pool's 16 connections.
const BLOCKING_THREADS_PER_WORKER: usize = 8;

fn routes(cfg: &mut web::ServiceConfig) {
    use pages::{account, activity, code, delete, home, reset, sessions, sign_in, sign_up, two_factor, verify};
    cfg.route("/", web::get().to(home))
        .route("/healthz", web::get().to(healthz))
        .route("/healthz", web::head().to(healthz))
        .route("/static/style.css", web::get().to(stylesheet))
        .route("/sign-up", web::get().to(sign_up::show))
        .route("/sign-up", web::post().to(sign_up::submit))
        .route("/sign-in", web::get().to(sign_in::show))
        .route("/sign-in", web::post().to(sign_in::submit))
        .route("/sign-out", web::post().to(sign_in::sign_out))
        .route("/account", web::get().to(account::show))
        .route("/account", web::post().to(account::update))
        .route("/account/password", web::post().to(account::change_password))
        .route("/account/sessions", web::get().to(sessions::show))
        .route("/account/sessions/end", web::post().to(sessions::end))
        .route("/account/activity", web::get().to(activity::show))
        .route("/verify/{channel}", web::get().to(verify::show))
        .route("/verify/{channel}", web::post().to(verify::check))
        .route("/verify/{channel}/send", web::post().to(verify::send))
        .route("/password-reset", web::get().to(reset::show_request))
        .route("/password-reset", web::post().to(reset::request))
        .route("/password-reset/verify", web::get().to(reset::show_verify))
        .route("/password-reset/verify", web::post().to(reset::verify))
        .route("/password-reset/new", web::get().to(reset::show_new))
        .route("/password-reset/new", web::post().to(reset::set_new))
        .route("/sign-in/code", web::get().to(code::show_request))
        .route("/sign-in/code", web::post().to(code::request))
        .route("/sign-in/code/verify", web::get().to(code::show_verify))
        .route("/sign-in/code/verify", web::post().to(code::verify))
        .route("/account/delete", web::get().to(delete::show))
        .route("/account/delete", web::post().to(delete::delete))
        .route("/account/export", web::get().to(delete::export));
    two_factor::routes(cfg);
    pages::passkeys::routes(cfg);
}

async fn not_found(visitor: Visitor) -> HttpResponse {
    error::error_page(actix_web::http::StatusCode::NOT_FOUND, Some(visitor.chrome()), None)
}

/// The stylesheet is part of the binary, so the server runs from any working directory.
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/style.css"))
}

/// 200 `ok` when the database answers, else 503.
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    if state.health.alive().await {
        HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")
    } else {
        HttpResponse::ServiceUnavailable().content_type("text/plain; charset=utf-8").body("database unavailable")
    }
}

/// Every minute: expired sessions, stale throttle rows and full per-IP buckets go.
fn spawn_housekeeping(state: AppState) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let flows = state.flows.clone();
            match web::block(move || flows.housekeeping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "housekeeping failed"),
                Err(e) => tracing::warn!(error = %e, "housekeeping task failed"),
            }
            if let Err(e) = state.ip_limit.prune().await {
                tracing::warn!(error = format!("{e:#}"), "pruning the per-IP limit failed");
            }
        }
    });
}
