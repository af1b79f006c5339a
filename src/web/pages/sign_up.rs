//! `GET/POST /sign-up`: any subset of username, email and phone, and a password.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{form_errors, password_problems, typed};
use crate::accounts::NewUser;
use crate::domain::Region;
use crate::domain::password::NewPassword;
use crate::flows::Form;
use crate::web::error::AppError;
use crate::web::views::{FormErrors, SignUpView, html};
use crate::web::visitor::Visitor;
use crate::web::{AppState, signed_in_response};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignUpForm {
    pub(crate) username: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) password: Option<String>,
}

/// 200 with the form, signed in or not (the contract's row; signing up again simply switches
/// this browser to the new account).
pub async fn show(visitor: Visitor) -> HttpResponse {
    html(StatusCode::OK, &view(&visitor, &SignUpForm::default(), FormErrors::default()))
}

fn view(visitor: &Visitor, form: &SignUpForm, errors: FormErrors) -> SignUpView {
    SignUpView {
        chrome: visitor.chrome(),
        username: typed(&form.username),
        email: typed(&form.email),
        phone: typed(&form.phone),
        errors,
    }
}

/// The sign-up's rules, for the page and the JSON API alike: the identifiers (at least one) and
/// the password (the four validators, against the typed username and email).
pub(crate) fn parse(form: &SignUpForm, region: Option<Region>) -> Result<(NewUser, NewPassword), FormErrors> {
    let (new, mut errors) =
        match NewUser::from_raw(form.username.as_deref(), form.email.as_deref(), form.phone.as_deref(), region) {
            Ok(new) => (Some(new), FormErrors::default()),
            Err(field_errors) => (None, form_errors(&field_errors)),
        };
    // checked here too (as `create_user` will) so that no password is hashed for nothing
    if new.as_ref().is_some_and(|n| !n.has_identifier()) {
        errors.general("Give at least one of a username, an email address or a phone number.");
    }
    let raw_password = form.password.clone().unwrap_or_default();
    let password = NewPassword::parse(
        &raw_password,
        new.as_ref().and_then(|n| n.username.as_ref()).map(|u| u.as_str()).or(form.username.as_deref()),
        new.as_ref().and_then(|n| n.email.as_ref()).map(|e| e.as_str()).or(form.email.as_deref()),
    );
    let password = match password {
        Ok(password) => Some(password),
        Err(problems) => {
            password_problems(&mut errors, "password", problems);
            None
        }
    };
    match (new, password, errors.is_empty()) {
        (Some(new), Some(password), true) => Ok((new, password)),
        _ => Err(errors),
    }
}

pub async fn submit(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<SignUpForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let reshow = |errors: FormErrors| html(StatusCode::UNPROCESSABLE_ENTITY, &view(&visitor, &form, errors));

    let (new, password) = match parse(&form, state.settings.default_region) {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(reshow(errors)),
    };

    let ctx = visitor.context();
    let created = state.hashing(move |flows| flows.sign_up(new, &flows.hash(&password)?, &ctx)).await?;
    match created {
        Form::Done(user) => {
            tracing::info!(event = "sign_up", user_id = user.id, ip = visitor.log_ip(), "signed up");
            signed_in_response(&state, &visitor, user.id, "/account")
        }
        Form::Invalid(field_errors) => Ok(reshow(form_errors(&field_errors))),
        Form::NoUser => Err(AppError::Unexpected(anyhow::anyhow!("the new user vanished"))),
    }
}
