//! Who is asking: the session, the signed-in user (if any) and the CSRF token for forms.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};

use super::AppState;
use super::browser::BrowserId;
use super::csrf;
use super::error::AppError;
use super::session::{UserSession, client_context};
use super::views::Chrome;
use crate::accounts::User;
use crate::domain::RequestContext;

pub struct Visitor {
    pub session: UserSession,
    pub csrf_token: String,
    pub user: Option<User>,
    pub ip: Option<std::net::IpAddr>,
    /// This browser's long-lived id (new when it had no valid browser cookie).
    pub browser: BrowserId,
    /// The request as security records keep it (IP address, User-Agent, browser).
    context: RequestContext,
    /// `FLEX_USER_SITE_NAME`, for the pages' chrome.
    pub site_name: std::sync::Arc<str>,
}

impl Visitor {
    pub fn chrome(&self) -> Chrome {
        let chrome = match &self.user {
            Some(user) => Chrome::signed_in(self.csrf_token.clone(), user.display_name()),
            None => Chrome::signed_out(self.csrf_token.clone()),
        };
        chrome.named(&self.site_name)
    }

    /// Where this request comes from, for the activity log, sessions and notices.
    pub fn context(&self) -> RequestContext {
        self.context.clone()
    }

    /// The client's IP as a log field: `ip=203.0.113.7`, or no field when unknown.
    pub fn log_ip(&self) -> Option<tracing::field::DisplayValue<std::net::IpAddr>> {
        self.ip.map(tracing::field::display)
    }

    /// The user, or a redirect to sign in and come back to `path`.
    pub fn require_user(&self, path: &str) -> Result<&User, AppError> {
        self.user.as_ref().ok_or_else(|| AppError::Redirect(format!("/sign-in?next={}", url_encode(path))))
    }
}

impl FromRequest for Visitor {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req.app_data::<web::Data<AppState>>().expect("AppState").clone();
            let session = UserSession::of(&req);
            let csrf_token = csrf::form_token(&req, &state);
            let user = session.user(&state.flows).await?;
            let browser = BrowserId::of(&req, &state.cookies, &state.settings.secret_key);
            let context = RequestContext {
                browser: Some(browser.key(&state.settings.secret_key)),
                ..client_context(&req, &state)
            };
            let site_name = state.settings.site_name.as_str().into();
            Ok(Visitor { session, csrf_token, user, ip: context.ip, browser, context, site_name })
        })
    }
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

/// Percent-encodes a path for a query value, leaving `/` readable (`next=/account`).
pub(crate) fn url_encode(text: &str) -> String {
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
