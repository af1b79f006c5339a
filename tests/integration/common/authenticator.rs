//! A software authenticator for the passkey tests that run without a browser: it answers the
//! options the server sends as a platform authenticator with user verification would (ES256
//! keys, "none" attestation, a discoverable credential carrying the user handle), with knobs for
//! what an honest one never does: another origin, a counter that goes back.
//!
//! It builds the WebAuthn messages by the specification (authenticator data, CBOR, client data),
//! so the server's checks (webauthn-rs's) are exercised for real.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rand::RngExt as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub struct SoftAuthenticator {
    /// The origin it puts in the client data (a browser puts the page's).
    pub origin: String,
    key: SigningKey,
    pub credential_id: Vec<u8>,
    /// The signature counter of the next answer (then one more).
    pub counter: u32,
    /// The user handle the registration gave it.
    pub user_handle: Vec<u8>,
    /// The relying party id it was registered for.
    pub rp_id: String,
}

fn cbor_head(major: u8, value: u64, out: &mut Vec<u8>) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend([major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((value as u16).to_be_bytes());
        }
        _ => {
            out.push(major | 26);
            out.extend((value as u32).to_be_bytes());
        }
    }
}

fn cbor_int(value: i64, out: &mut Vec<u8>) {
    if value >= 0 { cbor_head(0, value as u64, out) } else { cbor_head(1, (-1 - value) as u64, out) }
}

fn cbor_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    cbor_head(2, bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn cbor_text(text: &str, out: &mut Vec<u8>) {
    cbor_head(3, text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

impl SoftAuthenticator {
    pub fn new(origin: &str) -> SoftAuthenticator {
        let mut secret = [0u8; 32];
        rand::rng().fill(&mut secret[..]);
        secret[0] &= 0x7f; // below the group order
        let mut credential_id = vec![0u8; 32];
        rand::rng().fill(&mut credential_id[..]);
        SoftAuthenticator {
            origin: origin.to_owned(),
            key: SigningKey::from_slice(&secret).expect("a P-256 key"),
            credential_id,
            counter: 1,
            user_handle: Vec::new(),
            rp_id: String::new(),
        }
    }

    pub fn credential_b64(&self) -> String {
        b64(&self.credential_id)
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false}))
            .unwrap()
    }

    /// Flags: user present, user verified, and `extra`.
    fn auth_data(&mut self, rp_id: &str, extra: u8) -> Vec<u8> {
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        data.push(0x01 | 0x04 | extra);
        data.extend(self.counter.to_be_bytes());
        self.counter += 1;
        data
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let (x, y) = (&bytes[1..33], &bytes[33..65]);
        let mut out = Vec::new();
        cbor_head(5, 5, &mut out);
        for (k, v) in [(1, 2), (3, -7), (-1, 1)] {
            cbor_int(k, &mut out);
            cbor_int(v, &mut out);
        }
        cbor_int(-2, &mut out);
        cbor_bytes(x, &mut out);
        cbor_int(-3, &mut out);
        cbor_bytes(y, &mut out);
        out
    }

    /// The answer to `navigator.credentials.create({publicKey})`: a `RegisterPublicKeyCredential`.
    pub fn register(&mut self, public_key: &Value) -> Value {
        let challenge = public_key["challenge"].as_str().expect("a challenge");
        self.rp_id = public_key["rp"]["id"].as_str().expect("an rp id").to_owned();
        self.user_handle = B64.decode(public_key["user"]["id"].as_str().expect("a user id")).unwrap();
        let rp_id = self.rp_id.clone();
        let mut auth_data = self.auth_data(&rp_id, 0x40);
        auth_data.extend([0u8; 16]); // AAGUID
        auth_data.extend((self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.credential_id);
        auth_data.extend(self.cose_key());
        let mut attestation = Vec::new();
        cbor_head(5, 3, &mut attestation);
        cbor_text("fmt", &mut attestation);
        cbor_text("none", &mut attestation);
        cbor_text("attStmt", &mut attestation);
        cbor_head(5, 0, &mut attestation);
        cbor_text("authData", &mut attestation);
        cbor_bytes(&auth_data, &mut attestation);
        let client_data = self.client_data("webauthn.create", challenge);
        json!({
            "id": self.credential_b64(),
            "rawId": self.credential_b64(),
            "type": "public-key",
            "extensions": {},
            "response": {"attestationObject": b64(&attestation), "clientDataJSON": b64(&client_data)}
        })
    }

    /// The answer to `navigator.credentials.get({publicKey})`: a `PublicKeyCredential`.
    pub fn assert(&mut self, public_key: &Value) -> Value {
        let challenge = public_key["challenge"].as_str().expect("a challenge");
        let rp_id = public_key["rpId"].as_str().map(str::to_owned).unwrap_or_else(|| self.rp_id.clone());
        let auth_data = self.auth_data(&rp_id, 0);
        let client_data = self.client_data("webauthn.get", challenge);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let signature: Signature = self.key.sign(&signed);
        json!({
            "id": self.credential_b64(),
            "rawId": self.credential_b64(),
            "type": "public-key",
            "extensions": {},
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.to_der().as_bytes()),
                "userHandle": b64(&self.user_handle)
            }
        })
    }
}
