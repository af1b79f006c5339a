//! `/account/two-factor…` and `/sign-in/two-factor`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, FormErrors, Page, When};

/// `GET /account/two-factor`: what is on, and the forms to change it.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "two_factor.html")]
pub struct TwoFactorView {
    pub chrome: Chrome,
    pub totp_on: bool,
    /// False when the app is on but its secret no longer opens (the secret key changed).
    pub totp_usable: bool,
    pub recovery_left: i64,
    pub has_usable_password: bool,
    /// Messages for the set-up (or turn-off) form.
    pub totp_errors: FormErrors,
    /// Messages for the new-recovery-codes form.
    pub recovery_errors: FormErrors,
    pub notice: Option<String>,
    /// The account has a second factor of any kind (recovery codes come with it).
    pub has_factor: bool,
    /// The passkeys part of the page (`passkeys.html`).
    pub passkeys: PasskeysPart,
}

/// The passkeys section of `/account/two-factor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasskeysPart {
    /// Passkeys can work here (the site's public URL has a host name, not an IP address).
    pub offered: bool,
    pub list: Vec<PasskeyRow>,
    /// Messages for the add form.
    pub add_errors: FormErrors,
    /// Messages for one passkey's remove form: its public id and the messages.
    pub remove_errors: Option<(String, FormErrors)>,
}

impl PasskeysPart {
    /// The messages for the remove form of passkey `public_id` (none for the others).
    pub fn remove_errors_of(&self, public_id: &str) -> FormErrors {
        match &self.remove_errors {
            Some((id, errors)) if id == public_id => errors.clone(),
            _ => FormErrors::default(),
        }
    }
}

/// One passkey as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRow {
    /// What its remove form posts to: `/account/passkeys/{public_id}/delete`.
    pub public_id: String,
    pub name: String,
    pub added: When,
    pub last_used: Option<When>,
}

impl PasskeyRow {
    /// The id of its remove form's password field.
    pub fn password_id(&self) -> String {
        format!("passkey-remove-password-{}", self.public_id)
    }

    /// The id of its remove form's code field (accounts without a password).
    pub fn code_id(&self) -> String {
        format!("passkey-remove-code-{}", self.public_id)
    }
}

/// `GET /account/two-factor/totp`: the pending secret, its URI and QR code, and the code form.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "two_factor_totp.html")]
pub struct TotpSetupView {
    pub chrome: Chrome,
    pub site_name: String,
    /// Base32, no padding.
    pub secret: String,
    pub uri: String,
    /// An inline SVG (our own markup from the `qrcode` crate, no script, no style).
    pub qr_svg: String,
    pub errors: FormErrors,
}

impl TotpSetupView {
    /// The secret in groups of four, easier to type.
    pub fn secret_groups(&self) -> String {
        self.secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
    }
}

/// `GET /account/two-factor/recovery-codes`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "two_factor_recovery.html")]
pub struct RecoveryCodesView {
    pub chrome: Chrome,
    /// The new codes, shown this once; empty otherwise.
    pub codes: Vec<String>,
    pub left: i64,
    /// The account has a second factor (an authenticator app or a passkey): new codes can be made.
    pub totp_on: bool,
}

/// `GET|POST /sign-in/two-factor`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "sign_in_two_factor.html")]
pub struct SecondStepView {
    pub chrome: Chrome,
    pub next: String,
    /// Days `remember` trusts this browser; 0: no checkbox.
    pub remember_days: u32,
    pub errors: FormErrors,
    /// The account has a passkey (and passkeys work here): the `#passkey-second-factor` button.
    pub passkey: bool,
    /// The account has an authenticator app (else the code field takes recovery codes only).
    pub app: bool,
}

impl SecondStepView {
    pub fn intro(&self) -> &'static str {
        if self.app {
            "Open your authenticator app and enter the code it shows for this site."
        } else {
            "Use your passkey below, or enter one of your recovery codes."
        }
    }

    pub fn code_hint(&self) -> &'static str {
        if self.app { "6 digits from your app, or one of your recovery codes." } else { "One of your recovery codes." }
    }
}

/// What the second step offers an account (see [`SecondStepView`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepFactors {
    pub passkey: bool,
    pub app: bool,
}

/// The QR code of `uri` as inline SVG: dark modules on a white quiet zone whatever the page's
/// colour scheme, so phones read it in dark mode too.
pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)?;
    let svg = code
        .render::<svg::Color>()
        .min_dimensions(220, 220)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build();
    // inline in HTML: no XML declaration; a name for assistive technology
    let start = svg.find("<svg").unwrap_or(0);
    Ok(svg[start..].replacen(
        "<svg ",
        "<svg class=\"qr__code\" role=\"img\" aria-label=\"QR code of the setup link for your authenticator app\" ",
        1,
    ))
}

page_with_chrome!(TwoFactorView, TotpSetupView, RecoveryCodesView, SecondStepView);
