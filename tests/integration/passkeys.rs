//! Passkeys over HTTP, without a browser: the rules that need no WebAuthn answer (the pages'
//! buttons and forms, the remove route, the JSON calls' refusals, the operator's reset and the
//! unverified-channel rule removing passkeys, the activity and notices), on both databases.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestDb;
use crate::common::app::{Browser, TestApp};
use crate::common::flows::spawn;

fn localhost(db: &TestDb) -> TestApp {
    spawn(db, &[("FLEX_USER_PUBLIC_URL", "http://localhost:{port}")])
}

/// A made-up assertion: well-formed, but from no authenticator.
fn forged_assertion(credential_id: &str) -> serde_json::Value {
    json!({
        "id": credential_id,
        "rawId": credential_id,
        "type": "public-key",
        "response": {
            "authenticatorData": "SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MFAAAAAQ",
            "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0",
            "signature": "MEUCIQCv",
            "userHandle": "AAAAAAAAAAAAAAAAAAAAAA"
        }
    })
}

on_both_databases!(sign_in_refusals_are_json_and_alike);

fn sign_in_refusals_are_json_and_alike(db: &TestDb) {
    let app = localhost(db);
    let browser = Browser::new(&app);
    browser.get("/sign-in");
    let start = browser.post_json("/sign-in/passkey/start", &json!({}));
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    let options: serde_json::Value = serde_json::from_str(&start.body).unwrap();
    let challenge = options["challenge"].as_str().unwrap().to_owned();
    assert_eq!(options["publicKey"]["rpId"], "localhost");
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let finish = browser.post_json(
        "/sign-in/passkey/finish",
        &json!({"challenge": challenge, "credential": forged_assertion("AAAA")}),
    );
    assert_eq!(finish.status, StatusCode::UNAUTHORIZED, "{}", finish.body);
    assert!(finish.body.contains("invalid_credentials"));
}
