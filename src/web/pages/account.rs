//! `GET/POST /account` (identifiers) and `POST /account/password`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{form_errors, password_problems, typed};
use crate::accounts::{Change, IdentifierChanges, User};
use crate::domain::password::NewPassword;
use crate::domain::{Email, Phone, Username};
use crate::flows::Form;
use crate::web::AppState;
use crate::web::error::AppError;
use crate::web::views::{AccountView, AddressView, FormErrors, html};
use crate::web::visitor::{Visitor, see_other};

const PATH: &str = "/account";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IdentifiersForm {
    username: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    current_password: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    current_password: Option<String>,
    new_password: Option<String>,
}

/// The account page, with the stored values in the identifiers form unless `typed` says otherwise.
async fn page(
    state: &AppState,
    visitor: &Visitor,
    user: &User,
    typed_values: Option<&IdentifiersForm>,
    identifier_errors: FormErrors,
    password_errors: FormErrors,
) -> Result<AccountView, AppError> {
    let id = user.id;
    let (email_token, phone_token) =
        state.flow(move |flows| Ok((flows.accounts.email_token(id)?, flows.accounts.phone_token(id)?))).await?;
    let address = |token: Option<crate::accounts::OtpToken>| {
        token.map(|t| AddressView { address: t.address, verified: t.state.verified })
    };
    let stored = |value: Option<&str>| value.unwrap_or_default().to_owned();
    let shown = |typed_value: Option<&Option<String>>, stored_value: String| match typed_value {
        Some(Some(v)) => v.clone(),
        _ => stored_value,
    };
    Ok(AccountView {
        chrome: visitor.chrome(),
        username: user.username.as_ref().map(|u| u.as_str().to_owned()),
        email: address(email_token),
        phone: address(phone_token),
        has_usable_password: user.has_usable_password(),
        form_username: shown(typed_values.map(|f| &f.username), stored(user.username.as_ref().map(Username::as_str))),
        form_email: shown(typed_values.map(|f| &f.email), stored(user.email.as_ref().map(Email::as_str))),
        form_phone: shown(typed_values.map(|f| &f.phone), stored(user.phone.as_ref().map(Phone::as_str))),
        identifier_errors,
        password_errors,
        notice: None,
    })
}

pub async fn show(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(PATH)?;
    let view = page(&state, &visitor, user, None, FormErrors::default(), FormErrors::default()).await?;
    Ok(html(StatusCode::OK, &view))
}

/// How one form field changes an identifier: absent keeps, blank removes, text sets.
pub(crate) fn change<T>(
    raw: &Option<String>,
    parse: impl Fn(&str) -> Result<T, crate::domain::Invalid>,
    field: &'static str,
    errors: &mut FormErrors,
) -> Change<T> {
    match raw.as_deref().map(str::trim) {
        None => Change::Keep,
        Some("") => Change::Remove,
        Some(text) => match parse(text) {
            Ok(value) => Change::Set(value),
            Err(e) => {
                errors.field(field, e.0);
                Change::Keep
            }
        },
    }
}

pub async fn update(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<IdentifiersForm>,
) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(PATH)?.clone();
    let form = form.into_inner();
    let region = state.settings.default_region;
    let mut errors = FormErrors::default();
    let changes = IdentifierChanges {
        username: change(&form.username, Username::parse, "username", &mut errors),
        email: change(&form.email, Email::parse, "email", &mut errors),
        phone: change(&form.phone, |t| Phone::parse(t, region), "phone", &mut errors),
    };
    let reshow = async |errors: FormErrors| -> Result<HttpResponse, AppError> {
        let view = page(&state, &visitor, &user, Some(&form), errors, FormErrors::default()).await?;
        Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &view))
    };
    if !errors.is_empty() {
        return reshow(errors).await;
    }

    let (checked, current, ctx) = (user.clone(), typed(&form.current_password), visitor.context());
    match state.hashing(move |flows| flows.change_identifiers(&checked, changes, &current, &ctx)).await? {
        Form::Done(updated) => {
            if updated.before != updated.after {
                tracing::info!(
                    event = "identifiers_changed",
                    user_id = user.id,
                    ip = visitor.log_ip(),
                    email_changed = updated.before.email != updated.after.email,
                    phone_changed = updated.before.phone != updated.after.phone,
                    username_changed = updated.before.username != updated.after.username,
                    "identifiers changed"
                );
            }
            Ok(see_other(PATH))
        }
        Form::Invalid(field_errors) => reshow(form_errors(&field_errors)).await,
        Form::NoUser => Ok(see_other("/sign-in")),
    }
}

/// A password change's rules before any hashing, for the page and the JSON API alike: the
/// account has a usable password, the current one is given, the new one passes the validators.
pub(crate) fn parse_password_change(user: &User, current: &str, raw_new: &str) -> Result<NewPassword, FormErrors> {
    let mut errors = FormErrors::default();
    if !user.has_usable_password() {
        errors.general("This account has no password yet: use “Forgot your password?” to set one.");
    } else if current.is_empty() {
        errors.field("current_password", "Enter your current password.");
    }
    let new_password = match NewPassword::parse(
        raw_new,
        user.username.as_ref().map(Username::as_str),
        user.email.as_ref().map(Email::as_str),
    ) {
        Ok(p) => Some(p),
        Err(problems) => {
            password_problems(&mut errors, "new_password", problems);
            None
        }
    };
    new_password.filter(|_| errors.is_empty()).ok_or(errors)
}

/// The message for a wrong current password.
pub(crate) const WRONG_CURRENT: &str = "That is not your current password.";

pub async fn change_password(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(PATH)?.clone();
    let current = typed(&form.current_password);
    let raw_new = typed(&form.new_password);
    let reshow = async |errors: FormErrors| -> Result<HttpResponse, AppError> {
        let view = page(&state, &visitor, &user, None, FormErrors::default(), errors).await?;
        Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &view))
    };
    let new_password = match parse_password_change(&user, &current, &raw_new) {
        Ok(new_password) => new_password,
        Err(errors) => return reshow(errors).await,
    };

    let (checked, ctx) = (user.clone(), visitor.context());
    let changed = state.hashing(move |flows| flows.change_password(&checked, &current, &new_password, &ctx)).await?;
    if !changed {
        return reshow(FormErrors::default().with_field("current_password", WRONG_CURRENT)).await;
    }
    tracing::info!(event = "password_changed", user_id = user.id, ip = visitor.log_ip(), "password changed");
    // Every session of the user was deleted; this one carries on under a new id.
    visitor.session.renew();
    Ok(see_other(PATH))
}
