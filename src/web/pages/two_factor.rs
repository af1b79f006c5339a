//! `/account/two-factor…` (set up the authenticator app, recovery codes, turn it off) and the
//! second sign-in step, `/sign-in/two-factor`.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{form_errors, seconds, too_many, typed};
use crate::accounts::User;
use crate::flows::Form;
use crate::flows::two_factor::{Confirmation, SecondStep, TotpConfirm};
use crate::metrics::{self, SignInResult};
use crate::web::error::AppError;
use crate::web::views::{
    FormErrors, RecoveryCodesView, SecondStepView, StepFactors, TotpSetupView, TwoFactorView, html, qr_svg,
};
use crate::web::visitor::{Visitor, local_path, see_other};
use crate::web::{AppState, signed_in_response};

pub(crate) const OVERVIEW: &str = "/account/two-factor";
const TOTP: &str = "/account/two-factor/totp";
pub(crate) const RECOVERY: &str = "/account/two-factor/recovery-codes";
const SECOND_STEP: &str = "/sign-in/two-factor";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(OVERVIEW, web::get().to(overview))
        .route("/account/two-factor/totp/setup", web::post().to(start_setup))
        .route(TOTP, web::get().to(show_setup))
        .route(TOTP, web::post().to(confirm_setup))
        .route("/account/two-factor/totp/disable", web::post().to(disable))
        .route(RECOVERY, web::get().to(show_recovery))
        .route(RECOVERY, web::post().to(new_recovery))
        .route(SECOND_STEP, web::get().to(show_second_step))
        .route(SECOND_STEP, web::post().to(second_step));
}

/// A factor change's confirmation: `current_password`, or without one a current factor's `code`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    current_password: Option<String>,
    code: Option<String>,
}

impl PasswordForm {
    pub(crate) fn confirmation(&self) -> Confirmation {
        Confirmation { current_password: typed(&self.current_password), code: typed(&self.code) }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    code: Option<String>,
    remember: Option<String>,
}

/// Which form of the overview a message belongs to.
pub(crate) enum Section {
    Totp,
    Recovery,
    PasskeyAdd,
    /// The remove form of the passkey with this public id.
    PasskeyRemove(String),
}

/// A factor change refused (a wrong password, say): 422, the overview with `errors` at `section`.
pub(crate) async fn refused(
    state: &AppState,
    visitor: &Visitor,
    user: &User,
    section: Section,
    errors: &crate::accounts::FieldErrors,
) -> Result<HttpResponse, AppError> {
    let errors = Some((section, form_errors(errors)));
    overview_page(state, visitor, user, StatusCode::UNPROCESSABLE_ENTITY, errors, None).await
}

pub(crate) async fn overview_page(
    state: &AppState,
    visitor: &Visitor,
    user: &User,
    status: StatusCode,
    errors: Option<(Section, FormErrors)>,
    notice: Option<String>,
) -> Result<HttpResponse, AppError> {
    let user_id = user.id;
    let factors = state.flow(move |flows| flows.two_factor_status(user_id)).await?;
    let mut passkeys = super::passkeys::part(state, user_id).await?;
    let (mut totp_errors, mut recovery_errors) = (FormErrors::default(), FormErrors::default());
    match errors {
        Some((Section::Totp, e)) => totp_errors = e,
        Some((Section::Recovery, e)) => recovery_errors = e,
        Some((Section::PasskeyAdd, e)) => passkeys.add_errors = e,
        Some((Section::PasskeyRemove(id), e)) => passkeys.remove_errors = Some((id, e)),
        None => {}
    }
    let view = TwoFactorView {
        chrome: visitor.chrome(),
        totp_on: factors.totp,
        totp_usable: factors.totp_usable,
        recovery_left: factors.recovery_codes_left,
        has_usable_password: user.has_usable_password(),
        totp_errors,
        recovery_errors,
        notice,
        has_factor: factors.any(),
        passkeys,
    };
    Ok(html(status, &view))
}

pub async fn overview(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(OVERVIEW)?;
    overview_page(&state, &visitor, user, StatusCode::OK, None, None).await
}

pub async fn start_setup(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(OVERVIEW)?.clone();
    let proof = form.confirmation();
    let checked = user.clone();
    match state.hashing(move |flows| flows.start_totp_setup(&checked, &proof)).await? {
        Form::Done(pending) => {
            visitor.session.set_totp_setup(&pending)?;
            Ok(see_other(TOTP))
        }
        Form::Invalid(errors) => refused(&state, &visitor, &user, Section::Totp, &errors).await,
        Form::NoUser => Err(AppError::Redirect("/sign-in".into())),
    }
}

/// The setup page for the pending secret, or `None` when nothing is pending (or it is void).
async fn setup_page(
    state: &AppState,
    visitor: &Visitor,
    user: &User,
    status: StatusCode,
    errors: FormErrors,
) -> Result<Option<HttpResponse>, AppError> {
    let Some(pending) = visitor.session.totp_setup() else { return Ok(None) };
    let checked = user.clone();
    let Some(secret) = state.flow(move |flows| flows.pending_totp_secret(&checked, &pending)).await? else {
        visitor.session.clear_totp_setup();
        return Ok(None);
    };
    let site_name = state.settings.site_name.clone();
    let uri = secret.uri(&site_name, user.display_name())?;
    let view = TotpSetupView {
        chrome: visitor.chrome(),
        site_name,
        secret: secret.base32(),
        qr_svg: qr_svg(&uri)?,
        uri,
        errors,
    };
    Ok(Some(html(status, &view)))
}

pub async fn show_setup(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(TOTP)?;
    Ok(setup_page(&state, &visitor, user, StatusCode::OK, FormErrors::default())
        .await?
        .unwrap_or_else(|| see_other(OVERVIEW)))
}

pub async fn confirm_setup(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(TOTP)?.clone();
    let Some(pending) = visitor.session.totp_setup() else { return Ok(see_other(OVERVIEW)) };
    let code = typed(&form.code);
    let (checked, ctx) = (user.clone(), visitor.context());
    match state.flow(move |flows| flows.confirm_totp(&checked, &pending, &code, &ctx)).await? {
        TotpConfirm::On(codes) => {
            visitor.session.clear_totp_setup();
            let fresh = state.flows.seal_fresh_codes(user.id, &codes);
            if !codes.is_empty() {
                visitor.session.set_fresh_codes(&fresh)?;
            }
            Ok(see_other(RECOVERY))
        }
        TotpConfirm::Wrong => {
            let errors = FormErrors::default()
                .with_field("code", "That code is not right. Enter the code your app shows now, after adding the key.");
            let page = setup_page(&state, &visitor, &user, StatusCode::UNPROCESSABLE_ENTITY, errors).await?;
            Ok(page.unwrap_or_else(|| see_other(OVERVIEW)))
        }
        TotpConfirm::Void => {
            visitor.session.clear_totp_setup();
            Ok(see_other(OVERVIEW))
        }
    }
}

pub async fn disable(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(OVERVIEW)?.clone();
    let proof = form.confirmation();
    let (checked, ctx) = (user.clone(), visitor.context());
    match state.hashing(move |flows| flows.disable_totp(&checked, &proof, &ctx)).await? {
        Form::Done(_) => Ok(see_other(OVERVIEW)),
        Form::Invalid(errors) => refused(&state, &visitor, &user, Section::Totp, &errors).await,
        Form::NoUser => Err(AppError::Redirect("/sign-in".into())),
    }
}

pub async fn show_recovery(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(RECOVERY)?;
    let codes =
        visitor.session.take_fresh_codes().map(|f| state.flows.open_fresh_codes(user.id, &f)).unwrap_or_default();
    let user_id = user.id;
    let factors = state.flow(move |flows| flows.two_factor_status(user_id)).await?;
    let view = RecoveryCodesView {
        chrome: visitor.chrome(),
        codes,
        left: factors.recovery_codes_left,
        totp_on: factors.any(),
    };
    Ok(html(StatusCode::OK, &view))
}

pub async fn new_recovery(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(OVERVIEW)?.clone();
    let proof = form.confirmation();
    let (checked, ctx) = (user.clone(), visitor.context());
    match state.hashing(move |flows| flows.new_recovery_codes(&checked, &proof, &ctx)).await? {
        Form::Done(codes) => {
            visitor.session.set_fresh_codes(&state.flows.seal_fresh_codes(user.id, &codes))?;
            Ok(see_other(RECOVERY))
        }
        Form::Invalid(errors) => refused(&state, &visitor, &user, Section::Recovery, &errors).await,
        Form::NoUser => Err(AppError::Redirect("/sign-in".into())),
    }
}

fn second_step_view(
    state: &AppState,
    visitor: &Visitor,
    next: &str,
    errors: FormErrors,
    factors: StepFactors,
) -> SecondStepView {
    SecondStepView {
        chrome: visitor.chrome(),
        next: local_path(next).unwrap_or_default().to_owned(),
        remember_days: state.settings.trusted_browser_days,
        errors,
        passkey: factors.passkey,
        app: factors.app,
    }
}

/// The half sign-in of this session while it holds, with its account's id; otherwise it is
/// dropped and the visitor goes back to `/sign-in`.
async fn holding_half(
    state: &AppState,
    visitor: &Visitor,
) -> Result<(crate::flows::two_factor::HalfSignIn, i64), AppError> {
    let Some(half) = visitor.session.half_sign_in() else { return Err(AppError::Redirect("/sign-in".into())) };
    let checked = half.clone();
    let Some(user) = state.flow(move |flows| flows.half_sign_in_user(&checked)).await? else {
        visitor.session.clear_half_sign_in();
        return Err(AppError::Redirect("/sign-in".into()));
    };
    Ok((half, user.id))
}

pub async fn show_second_step(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let (half, user_id) = holding_half(&state, &visitor).await?;
    let factors = super::passkeys::offered_for(&state, user_id).await?;
    Ok(html(StatusCode::OK, &second_step_view(&state, &visitor, &half.next, FormErrors::default(), factors)))
}

pub async fn second_step(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let (half, user_id) = holding_half(&state, &visitor).await?;
    let code = typed(&form.code);
    let remember = form.remember.as_deref() == Some("on") && state.settings.trusted_browser_days > 0;
    let (checked, ctx) = (half.clone(), visitor.context());
    match state.flow(move |flows| flows.second_step(&checked, &code, &ctx)).await? {
        SecondStep::Void => {
            visitor.session.clear_half_sign_in();
            Ok(see_other("/sign-in"))
        }
        SecondStep::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::sign_in(SignInResult::Throttled);
            tracing::info!(
                event = "second_step_throttled",
                ip = visitor.log_ip(),
                retry_after = secs,
                "second step throttled"
            );
            let errors =
                FormErrors::default().with_general(format!("Too many wrong codes. Try again in {}.", seconds(secs)));
            let factors = super::passkeys::offered_for(&state, user_id).await?;
            let page =
                html(StatusCode::TOO_MANY_REQUESTS, &second_step_view(&state, &visitor, &half.next, errors, factors));
            Ok(too_many(page, secs))
        }
        SecondStep::Wrong => {
            metrics::sign_in(SignInResult::Wrong);
            tracing::info!(event = "second_step_failed", ip = visitor.log_ip(), "second step failed");
            let errors = FormErrors::default().with_field(
                "code",
                "That code is not right. Enter the code your app shows now, or an unused recovery code.",
            );
            let factors = super::passkeys::offered_for(&state, user_id).await?;
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &second_step_view(&state, &visitor, &half.next, errors, factors)))
        }
        SecondStep::SignedIn { user, recovery_left } => {
            metrics::sign_in(SignInResult::SignedIn);
            tracing::info!(
                event = "sign_in",
                user_id = user.id,
                ip = visitor.log_ip(),
                recovery_left,
                "signed in with a second factor"
            );
            let location = local_path(&half.next).filter(|n| !n.is_empty()).unwrap_or("/account").to_owned();
            let mut response = signed_in_response(&state, &visitor, user.id, &location)?;
            if remember {
                remember_browser(&state, &mut response, user.id).await?;
            }
            Ok(response)
        }
    }
}

/// Adds the trusted-browser cookie (`remember`) for the account at its factor version to the
/// response of a finished second step (a code's, or a passkey's).
pub(crate) async fn remember_browser(
    state: &AppState,
    response: &mut HttpResponse,
    user_id: i64,
) -> Result<(), AppError> {
    let days = state.settings.trusted_browser_days;
    if let Some(value) = state.flow(move |flows| flows.trusted_cookie(user_id, days)).await? {
        let cookie = Cookie::build(state.cookies.trusted, value)
            .path("/")
            .http_only(true)
            .secure(state.cookies.secure)
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::days(i64::from(days)))
            .finish();
        response
            .add_cookie(&cookie)
            .map_err(|e| AppError::Unexpected(anyhow::Error::new(e).context("trusted-browser cookie")))?;
    }
    Ok(())
}
