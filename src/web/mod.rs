//! The HTTP layer: server start-up and route table. Handlers stay thin: parse the form into
//! domain types, call one `accounts` function on a blocking thread, answer.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use diesel::connection::SimpleConnection;

use crate::accounts::Accounts;
use crate::config::Settings;

pub mod session;
pub mod views;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub accounts: Accounts,
    pub settings: std::sync::Arc<Settings>,
}

/// Starts serving on `listener` (bind port 0 in tests to get a free one).
pub fn run(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).route("/healthz", web::get().to(healthz)))
        .listen(listener)?
        .run();
    Ok(server)
}

/// 200 `ok` when the database answers, else 503.
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.accounts.pool().clone();
    let alive = web::block(move || pool.get().ok().is_some_and(|mut c| c.batch_execute("SELECT 1").is_ok()))
        .await
        .unwrap_or(false);
    if alive {
        HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")
    } else {
        HttpResponse::ServiceUnavailable().content_type("text/plain; charset=utf-8").body("database unavailable")
    }
}
