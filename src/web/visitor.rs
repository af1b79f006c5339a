//! Who is asking: the session, the signed-in user (if any) and the CSRF token for forms.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, HttpResponse, web};

use super::AppState;
use super::csrf::{self, CsrfSecret};
use super::error::AppError;
use super::session::UserSession;
use super::views::Chrome;
use crate::accounts::User;

pub struct Visitor {
    pub session: UserSession,
    pub csrf_token: String,
    pub user: Option<User>,
    pub ip: Option<std::net::IpAddr>,
}

impl Visitor {
    pub fn chrome(&self) -> Chrome {
        match &self.user {
            Some(user) => Chrome::signed_in(self.csrf_token.clone(), user.display_name()),
            None => Chrome::signed_out(self.csrf_token.clone()),
        }
    }

    /// The user, or a redirect to sign in and come back to `path`.
    pub fn require_user(&self, path: &str) -> Result<&User, AppError> {
        self.user.as_ref().ok_or_else(|| AppError::Redirect(format!("/sign-in?next={}", url_encode(path))))
    }
}

impl FromRequest for Visitor {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        let session = UserSession::from_request(&req, payload).into_inner();
        Box::pin(async move {
            let session = session.map_err(|e| AppError::Unexpected(anyhow::anyhow!("session: {e}")))?;
            let state = req.app_data::<web::Data<AppState>>().expect("AppState").clone();
            let secret = CsrfSecret::extract(&req).await.map_err(|e| AppError::Unexpected(anyhow::anyhow!("{e}")))?;
            let csrf_token = csrf::token_for(&state, &secret.0);
            let user = match session.user_id() {
                Some(id) => {
                    let flows = state.flows.clone();
                    let user = web::block(move || flows.user(id)).await??;
                    // an account deactivated or deleted meanwhile is signed out here
                    let user = user.filter(|u| u.is_active);
                    if user.is_none() {
                        session.sign_out();
                    }
                    user
                }
                None => None,
            };
            let ip = state.ip_limit.client_ip(&req);
            Ok(Visitor { session, csrf_token, user, ip })
        })
    }
}

/// The header of a page made outside a handler (a refusal by a middleware): the signed-in
/// user's, so the page still has its sign-out button. `None` for anonymous visitors.
pub async fn signed_in_chrome(req: &HttpRequest, state: &AppState) -> Option<Chrome> {
    use actix_session::SessionExt as _;
    let user_id = req.get_session().get::<i64>("user_id").ok().flatten()?;
    let flows = state.flows.clone();
    let user = web::block(move || flows.user(user_id)).await.ok()?.ok()??;
    let secret = req
        .extensions()
        .get::<CsrfSecret>()
        .map(|s| s.0.clone())
        .or_else(|| req.cookie(state.cookies.csrf).map(|c| c.value().to_owned()))?;
    Some(Chrome::signed_in(csrf::token_for(state, &secret), user.display_name()))
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

/// Percent-encodes a path for a query value, leaving `/` readable (`next=/account`).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `next` that stays on this site: a local path (starts with `/`, second character neither
/// `/` nor `\`, no `\` and no control character anywhere).
pub fn local_path(next: &str) -> Option<&str> {
    let mut chars = next.chars();
    let local = chars.next() == Some('/')
        && !matches!(chars.next(), Some('/') | Some('\\'))
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    local.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn next_keeps_slashes_readable() {
        assert_eq!(super::url_encode("/verify/email"), "/verify/email");
        assert_eq!(super::url_encode("/a b&c"), "/a%20b%26c");
    }

    #[test]
    fn only_local_paths_are_followed() {
        for ok in ["/", "/account", "/verify/email?x=1", "/a/b//c"] {
            assert_eq!(local_path(ok), Some(ok), "{ok}");
        }
        for bad in
            ["", "account", "//evil.example", "/\\evil.example", "/a\\b", "https://evil.example", "/a\nb", "/\t/x"]
        {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }
}
