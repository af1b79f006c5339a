//! The browser cookie: a long-lived random id per browser, so that a sign-in from a browser
//! that has never signed in to the account can be told to its owner (CONTRACT.md, "Notices").
//!
//! The cookie (`flex_browser`, `__Host-flex_browser` behind https; named in [`super::Cookies`])
//! holds `ID.MAC`: 128 random bits and an HMAC of them under a key derived from the secret key,
//! so a browser cannot pick its id. It outlives sign-out (it is no credential: it signs nobody
//! in), and the database keeps only another keyed hash of the id
//! (`accounts::browsers`). A missing or forged cookie gets a fresh id, sent with the next
//! sign-up or sign-in.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt as _;
use subtle::ConstantTimeEq as _;

use super::Cookies;
use crate::secret::SecretKey;

/// How long the cookie lives: 400 days, the most browsers keep one.
const MAX_AGE_DAYS: i64 = 400;

/// This browser's id: from its cookie, or new (then `fresh`, and the cookie still to be sent).
#[derive(Clone)]
pub struct BrowserId {
    id: String,
    pub fresh: bool,
}

impl std::fmt::Debug for BrowserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserId").field("fresh", &self.fresh).finish_non_exhaustive()
    }
}

fn mac(secret: &SecretKey, id: &str) -> String {
    secret.keyed_hash("browser-cookie", id.as_bytes())
}

impl BrowserId {
    /// The id in the request's browser cookie when its MAC is right, else a new one.
    pub fn of(req: &HttpRequest, cookies: &Cookies, secret: &SecretKey) -> BrowserId {
        let from_cookie = req.cookie(cookies.browser).and_then(|c| {
            let (id, tag) = c.value().split_once('.')?;
            let well_formed = id.len() == 22 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            (well_formed && bool::from(mac(secret, id).as_bytes().ct_eq(tag.as_bytes()))).then(|| id.to_owned())
        });
        match from_cookie {
            Some(id) => BrowserId { id, fresh: false },
            None => {
                let mut bytes = [0u8; 16];
                rand::rng().fill(&mut bytes[..]);
                BrowserId { id: URL_SAFE_NO_PAD.encode(bytes), fresh: true }
            }
        }
    }

    /// What the database keeps for this browser (never the id itself).
    pub fn key(&self, secret: &SecretKey) -> String {
        secret.keyed_hash("known-browser", self.id.as_bytes())
    }

    /// The cookie that carries the id.
    pub fn cookie(&self, cookies: &Cookies, secret: &SecretKey) -> Cookie<'static> {
        Cookie::build(cookies.browser, format!("{}.{}", self.id, mac(secret, &self.id)))
            .path("/")
            .http_only(true)
            .secure(cookies.secure)
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::days(MAX_AGE_DAYS))
            .finish()
    }
}
