//! `GET /account/sessions` (every live session of the user) and `POST /account/sessions/end`
//! (one of them, by its public id, or every other one with `others=on`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::accounts::sessions::LiveSession;
use crate::domain::client::describe_user_agent;
use crate::web::error::AppError;
use crate::web::views::{SessionRow, SessionsView, When, html};
use crate::web::visitor::{Visitor, see_other};
use crate::web::{AppState, signed_out_response};

const PATH: &str = "/account/sessions";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EndForm {
    session: Option<String>,
    others: Option<String>,
}

fn row(session: LiveSession, current: &str) -> SessionRow {
    SessionRow {
        current: session.public_id.as_deref() == Some(current),
        public_id: session.public_id.unwrap_or_default(),
        began: When::at(session.created_at),
        last_used: session.last_seen_at.map(When::at),
        ip: session.last_ip.unwrap_or_else(|| "Unknown".into()),
        browser: describe_user_agent(session.user_agent.as_deref()),
    }
}

pub async fn show(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let user_id = visitor.require_user(PATH)?.id;
    let current = visitor.session.ensure_public_id()?;
    let live = state.flow(move |flows| flows.sessions_of(user_id)).await?;
    let mut sessions: Vec<SessionRow> = live.into_iter().map(|s| row(s, &current)).collect();
    // this browser first, then the others newest first
    sessions.sort_by_key(|s| !s.current);
    Ok(html(StatusCode::OK, &SessionsView { chrome: visitor.chrome(), sessions }))
}

pub async fn end(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<EndForm>,
) -> Result<HttpResponse, AppError> {
    let user_id = visitor.require_user(PATH)?.id;
    let current = visitor.session.ensure_public_id()?;
    let ctx = visitor.context();
    if form.others.as_deref() == Some("on") {
        let keep = current.clone();
        let ended = state.flow(move |flows| flows.end_other_sessions(user_id, &keep, &ctx)).await?;
        tracing::info!(event = "other_sessions_ended", user_id, ended, ip = visitor.log_ip(), "other sessions ended");
        return Ok(see_other(PATH));
    }
    let Some(target) = form.session.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned) else {
        return Ok(see_other(PATH));
    };
    if target == current {
        // ending this very session is signing out
        let public_id = Some(current);
        state.flow(move |flows| flows.sign_out(user_id, public_id.as_deref(), &ctx)).await?;
        tracing::info!(event = "sign_out", user_id, ip = visitor.log_ip(), "signed out");
        visitor.session.sign_out();
        return Ok(signed_out_response(&state, PATH));
    }
    let ended = state.flow(move |flows| flows.end_session(user_id, &target, &ctx)).await?;
    if ended {
        tracing::info!(event = "session_ended", user_id, ip = visitor.log_ip(), "another session ended");
    }
    Ok(see_other(PATH))
}
