//! The OpenAPI 3.1 document, generated from the handlers (their actix route macros, bodies and
//! answers) and served at `GET /api/v1/openapi.json`.

use std::sync::OnceLock;

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::handlers;

/// The routes under `/api/v1`, as the scope serves them.
#[derive(OpenApi)]
#[openapi(paths(
    handlers::sign_up,
    handlers::sign_in,
    handlers::sign_in_two_factor,
    handlers::sign_in_code,
    handlers::sign_in_code_verify,
    handlers::sign_out,
    handlers::me,
    handlers::update_me,
    handlers::change_password,
    handlers::send_code,
    handlers::verify_address,
    handlers::password_reset,
    handlers::password_reset_verify,
    handlers::password_reset_complete,
    openapi_json,
))]
struct V1;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flex-user",
        description = "Sign up and sign in with a username, an email address or a phone number: the \
                       pages' accounts, rules, throttles and limits, in JSON. A token is a server-side \
                       session (`Authorization: Bearer TOKEN`); no cookies. Errors are `{\"error\": CODE, \
                       \"message\": TEXT}`, with `fields` for invalid input and `retry_after` (and \
                       `Retry-After`) on 429."
    ),
    nest((path = "/api/v1", api = V1)),
    components(schemas(handlers::ChannelName)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The spec as JSON, made once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().expect("the OpenAPI document serializes"))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(tag = "meta", responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
#[get("/openapi.json")]
pub(super) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_openapi_3_1_with_every_route_under_the_prefix() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/api/v1/sign-up", &["post"][..]),
            ("/api/v1/sign-in", &["post"]),
            ("/api/v1/sign-in/two-factor", &["post"]),
            ("/api/v1/sign-in/code", &["post"]),
            ("/api/v1/sign-in/code/verify", &["post"]),
            ("/api/v1/sign-out", &["post"]),
            ("/api/v1/me", &["get", "patch"]),
            ("/api/v1/me/password", &["post"]),
            ("/api/v1/me/{channel}/send", &["post"]),
            ("/api/v1/me/{channel}/verify", &["post"]),
            ("/api/v1/password-reset", &["post"]),
            ("/api/v1/password-reset/verify", &["post"]),
            ("/api/v1/password-reset/complete", &["post"]),
            ("/api/v1/openapi.json", &["get"]),
        ] {
            for method in methods {
                assert!(paths.get(path).and_then(|p| p.get(*method)).is_some(), "{method} {path} missing");
            }
        }
        assert_eq!(paths.len(), 14, "{:?}", paths.keys().collect::<Vec<_>>());
    }
}
