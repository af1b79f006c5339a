//! Users: any non-empty subset of username, email and phone, each unique.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::tokens::{self, Channel};
use crate::db::schema::users;
use crate::db::{self, AnyConnection, db_time};
use crate::domain::{Email, Identifier, Phone, Region, Username};
use crate::secret::Sensitive;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: Option<Username>,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub(crate) password: Sensitive<String>,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub date_joined: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

impl User {
    /// What pages call the user: username, else email, else phone (the seed's `get_username`).
    pub fn display_name(&self) -> &str {
        self.username
            .as_ref()
            .map(Username::as_str)
            .or(self.email.as_ref().map(Email::as_str))
            .or(self.phone.as_ref().map(Phone::as_str))
            .unwrap_or_default()
    }

    /// False for accounts made without a password: they can only get one through a reset.
    pub fn has_usable_password(&self) -> bool {
        super::Passwords::is_usable(&self.password.0)
    }
}

/// The form fields a message can belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Username,
    Email,
    Phone,
    Password,
    /// The password typed to confirm a change.
    CurrentPassword,
    /// A second factor's name (a passkey's).
    Name,
    /// A current second factor's code, typed to confirm a change (accounts without a password).
    Code,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Username => "username",
            Field::Email => "email",
            Field::Phone => "phone",
            Field::Password => "password",
            Field::CurrentPassword => "current_password",
            Field::Name => "name",
            Field::Code => "code",
        }
    }
}

/// Messages for a form: each for one field, or for the whole form (`field: None`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldErrors(pub Vec<(Option<Field>, String)>);

impl FieldErrors {
    /// Just one message (`field: None`: for the whole form).
    pub fn one(field: Option<Field>, message: impl Into<String>) -> FieldErrors {
        FieldErrors(vec![(field, message.into())])
    }

    pub fn add(&mut self, field: Option<Field>, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds every message of `other`.
    pub fn extend(&mut self, other: FieldErrors) {
        self.0.extend(other.0);
    }

    pub fn get(&self, field: Field) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == Some(field)).map(|(_, m)| m.as_str())
    }

    /// Messages not tied to one field.
    pub fn general(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter(|(f, _)| f.is_none()).map(|(_, m)| m.as_str())
    }

    fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for FieldErrors {
    /// `field: message; …` on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, message)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match field {
                Some(field) => write!(f, "{}: {message}", field.as_str())?,
                None => f.write_str(message)?,
            }
        }
        Ok(())
    }
}

pub const NEED_AN_IDENTIFIER: &str = "You must supply at least one of username, email address or phone number.";

fn taken_message(field: Field) -> &'static str {
    match field {
        Field::Username => "A user with that username already exists.",
        Field::Email => "A user with that email address already exists.",
        Field::Phone | Field::Password | Field::CurrentPassword | Field::Name | Field::Code => {
            "A user with that phone number already exists."
        }
    }
}

/// For a username whose confusable skeleton is taken: "already exists" would puzzle someone
/// whose `admın` nobody has, so say why.
pub const USERNAME_TOO_SIMILAR: &str = "That username is too similar to an existing username.";

/// What `create_user` needs. Build it from typed values, or from raw text with
/// [`NewUser::from_raw`].
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: Option<Username>,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    /// `None`: an unusable password (as the seed's `set_password(None)`).
    pub password: Option<Sensitive<String>>,
    /// `None` means the default of the call: false for `create_user`, true for
    /// `create_superuser` (which refuses an explicit false, as the seed does).
    pub is_staff: Option<bool>,
    pub is_superuser: Option<bool>,
    /// Defaults to true.
    pub is_active: Option<bool>,
}

impl NewUser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn username(mut self, username: Username) -> Self {
        self.username = Some(username);
        self
    }

    pub fn email(mut self, email: Email) -> Self {
        self.email = Some(email);
        self
    }

    pub fn phone(mut self, phone: Phone) -> Self {
        self.phone = Some(phone);
        self
    }

    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(Sensitive(password.to_owned()));
        self
    }

    pub fn staff(mut self, is_staff: bool) -> Self {
        self.is_staff = Some(is_staff);
        self
    }

    pub fn superuser(mut self, is_superuser: bool) -> Self {
        self.is_superuser = Some(is_superuser);
        self
    }

    pub fn active(mut self, is_active: bool) -> Self {
        self.is_active = Some(is_active);
        self
    }

    /// Parses typed identifiers; blank or absent means "not given". Every bad field is reported.
    pub fn from_raw(
        username: Option<&str>,
        email: Option<&str>,
        phone: Option<&str>,
        default_region: Option<Region>,
    ) -> Result<NewUser, FieldErrors> {
        fn given(raw: Option<&str>) -> Option<&str> {
            raw.filter(|s| !s.trim().is_empty())
        }
        let mut errors = FieldErrors::default();
        let mut new = NewUser::new();
        if let Some(raw) = given(username) {
            match Username::parse(raw) {
                Ok(u) => new.username = Some(u),
                Err(e) => errors.add(Some(Field::Username), e.0),
            }
        }
        if let Some(raw) = given(email) {
            match Email::parse(raw) {
                Ok(e) => new.email = Some(e),
                Err(e) => errors.add(Some(Field::Email), e.0),
            }
        }
        if let Some(raw) = given(phone) {
            match Phone::parse(raw, default_region) {
                Ok(p) => new.phone = Some(p),
                Err(e) => errors.add(Some(Field::Phone), e.0),
            }
        }
        errors.into_result().map(|()| new)
    }

    pub(crate) fn has_identifier(&self) -> bool {
        self.username.is_some() || self.email.is_some() || self.phone.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Shown next to the fields (taken, or no identifier at all).
    #[error("{0}")]
    Invalid(FieldErrors),
    /// A programming error of the caller, as the seed's `ValueError`.
    #[error("{0}")]
    Refused(&'static str),
    /// The user is gone (deleted meanwhile).
    #[error("no such user")]
    NoUser,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The seed's name for what `create_user` returns.
pub type CreateUserError = AccountError;

impl From<diesel::result::Error> for AccountError {
    fn from(e: diesel::result::Error) -> Self {
        CreateUserError::Unexpected(e.into())
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct Row {
    id: i64,
    username: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    password: String,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
    date_joined: NaiveDateTime,
    last_login: Option<NaiveDateTime>,
}

impl From<Row> for User {
    fn from(r: Row) -> Self {
        User {
            id: r.id,
            username: r.username.map(Username::from_stored),
            email: r.email.map(Email::from_stored),
            phone: r.phone.map(Phone::from_stored),
            password: Sensitive(r.password),
            is_active: r.is_active,
            is_staff: r.is_staff,
            is_superuser: r.is_superuser,
            date_joined: r.date_joined.and_utc(),
            last_login: r.last_login.map(|t| t.and_utc()),
        }
    }
}

pub(crate) fn get(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<User>> {
    users::table.find(id).select(Row::as_select()).first(conn).optional().map(|r| r.map(User::from))
}

pub(crate) fn find(conn: &mut AnyConnection, identifier: &Identifier) -> QueryResult<Option<User>> {
    let query = users::table.select(Row::as_select()).into_boxed();
    let query = match identifier {
        Identifier::Username(u) => query.filter(users::username_key.eq(u.key())),
        Identifier::Email(e) => query.filter(users::email_key.eq(e.key())),
        Identifier::Phone(p) => query.filter(users::phone.eq(p.as_str())),
    };
    query.first(conn).optional().map(|r| r.map(User::from))
}

/// The seed's `get_by_natural_key`: the user matching every identifier given.
pub(crate) fn find_by_natural_key(
    conn: &mut AnyConnection,
    username: Option<&Username>,
    email: Option<&Email>,
    phone: Option<&Phone>,
) -> QueryResult<Option<User>> {
    let mut query = users::table.select(Row::as_select()).into_boxed();
    if let Some(u) = username {
        query = query.filter(users::username_key.eq(u.key()));
    }
    if let Some(e) = email {
        query = query.filter(users::email_key.eq(e.key()));
    }
    if let Some(p) = phone {
        query = query.filter(users::phone.eq(p.as_str()));
    }
    query.first(conn).optional().map(|r| r.map(User::from))
}

/// Which of the given identifiers already belong to someone (other than `except`).
pub(crate) fn taken(
    conn: &mut AnyConnection,
    username: Option<&Username>,
    email: Option<&Email>,
    phone: Option<&Phone>,
    except: Option<i64>,
) -> QueryResult<FieldErrors> {
    let mut errors = FieldErrors::default();
    let candidates = [
        username.map(|u| (Field::Username, Identifier::Username(u.clone()))),
        email.map(|e| (Field::Email, Identifier::Email(e.clone()))),
        phone.map(|p| (Field::Phone, Identifier::Phone(p.clone()))),
    ];
    for (field, identifier) in candidates.into_iter().flatten() {
        if find(conn, &identifier)?.is_some_and(|owner| Some(owner.id) != except) {
            errors.add(Some(field), taken_message(field));
        } else if let Identifier::Username(u) = &identifier
            && skeleton_owner(conn, u)?.is_some_and(|owner| Some(owner) != except)
        {
            errors.add(Some(field), USERNAME_TOO_SIMILAR);
        }
    }
    Ok(errors)
}

/// Who has a username with this one's confusable skeleton.
fn skeleton_owner(conn: &mut AnyConnection, username: &Username) -> QueryResult<Option<i64>> {
    users::table.filter(users::username_skeleton.eq(username.skeleton())).select(users::id).first(conn).optional()
}

/// Maps a unique violation (a race lost to a concurrent insert) to its field's message.
pub(crate) fn taken_by_race(e: &diesel::result::Error) -> Option<FieldErrors> {
    race_message(&db::unique_violation(e)?)
}

/// `constraint`: PostgreSQL's index name (`users_username_skeleton_unique`) or SQLite's message
/// (`UNIQUE constraint failed: users.username_skeleton`); both name the column.
fn race_message(constraint: &str) -> Option<FieldErrors> {
    let mut errors = FieldErrors::default();
    if constraint.contains("username_skeleton") {
        errors.add(Some(Field::Username), USERNAME_TOO_SIMILAR);
        return Some(errors);
    }
    let field = [Field::Username, Field::Email, Field::Phone].into_iter().find(|f| constraint.contains(f.as_str()))?;
    errors.add(Some(field), taken_message(field));
    Some(errors)
}

/// The seed's refusal of a user with none of username, email and phone.
fn no_identifier() -> AccountError {
    AccountError::Invalid(FieldErrors::one(None, NEED_AN_IDENTIFIER))
}

/// A write's error, with a lost uniqueness race as the field's message.
fn lost_race(e: diesel::result::Error) -> AccountError {
    match taken_by_race(&e) {
        Some(errors) => AccountError::Invalid(errors),
        None => e.into(),
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct Insert<'a> {
    username: Option<&'a str>,
    username_key: Option<String>,
    username_skeleton: Option<String>,
    email: Option<&'a str>,
    email_key: Option<String>,
    phone: Option<&'a str>,
    password: &'a str,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
    date_joined: NaiveDateTime,
}

/// Inserts the user and its tokens in one transaction. `password_hash` is already computed, so
/// no hashing happens while the write lock is held.
pub(crate) fn insert(
    conn: &mut AnyConnection,
    new: &NewUser,
    password_hash: &str,
    is_staff: bool,
    is_superuser: bool,
    now: DateTime<Utc>,
) -> Result<User, AccountError> {
    check_new(conn, new)?;
    db::write_transaction(conn, |conn| insert_in(conn, new, password_hash, is_staff, is_superuser, now))
}

/// The checks before an insert: at least one identifier, and friendly errors for every taken
/// field at once (the unique indexes still decide races, see [`insert_in`]).
pub(crate) fn check_new(conn: &mut AnyConnection, new: &NewUser) -> Result<(), AccountError> {
    if !new.has_identifier() {
        return Err(no_identifier());
    }
    taken(conn, new.username.as_ref(), new.email.as_ref(), new.phone.as_ref(), None)?
        .into_result()
        .map_err(AccountError::Invalid)
}

/// Inserts the user and its tokens; call inside a write transaction. A lost uniqueness race
/// comes back as the field's message.
pub(crate) fn insert_in(
    conn: &mut AnyConnection,
    new: &NewUser,
    password_hash: &str,
    is_staff: bool,
    is_superuser: bool,
    now: DateTime<Utc>,
) -> Result<User, AccountError> {
    let row = Insert {
        username: new.username.as_ref().map(Username::as_str),
        username_key: new.username.as_ref().map(Username::key),
        username_skeleton: new.username.as_ref().map(Username::skeleton),
        email: new.email.as_ref().map(Email::as_str),
        email_key: new.email.as_ref().map(Email::key),
        phone: new.phone.as_ref().map(Phone::as_str),
        password: password_hash,
        is_active: new.is_active.unwrap_or(true),
        is_staff,
        is_superuser,
        date_joined: db_time(now),
    };
    diesel::insert_into(users::table).values(&row).execute(conn).map_err(lost_race)?;
    // Read it back by a unique key (portable: no RETURNING needed).
    let identifier = match (&new.username, &new.email, &new.phone) {
        (Some(u), _, _) => Identifier::Username(u.clone()),
        (None, Some(e), _) => Identifier::Email(e.clone()),
        (None, None, Some(p)) => Identifier::Phone(p.clone()),
        (None, None, None) => return Err(AccountError::Refused("a user needs an identifier")),
    };
    let user = find(conn, &identifier)?.ok_or(AccountError::NoUser)?;
    tokens::sync_address(conn, user.id, Channel::Email, row.email)?;
    tokens::sync_address(conn, user.id, Channel::Phone, row.phone)?;
    Ok(user)
}

/// What to do with one identifier of an existing user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change<T> {
    /// Leave it as it is (the form had no such field).
    #[default]
    Keep,
    /// Remove it (the field was blank).
    Remove,
    /// Set it; a value equal to the stored one (by its uniqueness key) changes nothing.
    Set(T),
}

impl<T> Change<T> {
    /// Whether this really alters `stored` (a value equal to it by `key` is no change).
    pub fn alters(&self, stored: Option<&T>, key: impl Fn(&T) -> String) -> bool {
        match self {
            Change::Keep => false,
            Change::Remove => stored.is_some(),
            Change::Set(new) => stored.map(&key) != Some(key(new)),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct IdentifierChanges {
    pub username: Change<Username>,
    pub email: Change<Email>,
    pub phone: Change<Phone>,
}

impl IdentifierChanges {
    /// Whether the email or phone of `user` would change or go (which needs the password).
    pub fn alter_addresses(&self, user: &User) -> bool {
        self.email.alters(user.email.as_ref(), Email::key)
            || self.phone.alters(user.phone.as_ref(), |p| p.as_str().to_owned())
    }
}

/// The user before and after a change of identifiers.
#[derive(Debug, Clone)]
pub struct Updated {
    pub before: User,
    pub after: User,
}

impl Updated {
    /// The email address if it is new (the token was reset and wants a code).
    pub fn new_email(&self) -> Option<&Email> {
        self.after.email.as_ref().filter(|_| self.before.email != self.after.email)
    }

    pub fn new_phone(&self) -> Option<&Phone> {
        self.after.phone.as_ref().filter(|_| self.before.phone != self.after.phone)
    }
}

fn apply_change<T: Clone>(old: &Option<T>, change: Change<T>, key: impl Fn(&T) -> String) -> Option<T> {
    match change {
        Change::Keep => old.clone(),
        Change::Remove => None,
        Change::Set(new) if old.as_ref().is_some_and(|old| key(old) == key(&new)) => old.clone(),
        Change::Set(new) => Some(new),
    }
}

/// Changes identifiers in one transaction; see [`update_identifiers_in`].
pub(crate) fn update_identifiers(
    conn: &mut AnyConnection,
    user_id: i64,
    changes: IdentifierChanges,
) -> Result<Updated, AccountError> {
    db::write_transaction(conn, |conn| update_identifiers_in(conn, user_id, changes))
}

/// Changes identifiers; call inside a write transaction. A changed email or phone gets a reset
/// token (so it is unverified), a removed one loses its token, an unchanged one keeps it
/// verified.
pub(crate) fn update_identifiers_in(
    conn: &mut AnyConnection,
    user_id: i64,
    changes: IdentifierChanges,
) -> Result<Updated, AccountError> {
    let before = get(conn, user_id)?.ok_or(AccountError::NoUser)?;
    let username = apply_change(&before.username, changes.username, Username::key);
    let email = apply_change(&before.email, changes.email, Email::key);
    let phone = apply_change(&before.phone, changes.phone, |p: &Phone| p.as_str().to_owned());
    if username.is_none() && email.is_none() && phone.is_none() {
        return Err(no_identifier());
    }
    taken(
        conn,
        username.as_ref().filter(|_| username != before.username),
        email.as_ref().filter(|_| email != before.email),
        phone.as_ref().filter(|_| phone != before.phone),
        Some(user_id),
    )?
    .into_result()
    .map_err(AccountError::Invalid)?;
    let changed = username != before.username || email != before.email || phone != before.phone;
    diesel::update(users::table.find(user_id))
        .set((
            users::username.eq(username.as_ref().map(Username::as_str)),
            users::username_key.eq(username.as_ref().map(Username::key)),
            users::email.eq(email.as_ref().map(Email::as_str)),
            users::email_key.eq(email.as_ref().map(Email::key)),
            users::phone.eq(phone.as_ref().map(Phone::as_str)),
            // pending resets were made under the old identifiers (an equal value changes nothing)
            users::credential_version.eq(users::credential_version + i32::from(changed)),
        ))
        .execute(conn)
        .map_err(lost_race)?;
    // Only a username that really changed gets a new skeleton: an old row left without one (its
    // skeleton clashed at the backfill, see `db::backfill_username_skeletons`) must stay able to
    // change its email.
    if username != before.username {
        diesel::update(users::table.find(user_id))
            .set(users::username_skeleton.eq(username.as_ref().map(Username::skeleton)))
            .execute(conn)
            .map_err(lost_race)?;
    }
    tokens::sync_address(conn, user_id, Channel::Email, email.as_ref().map(Email::as_str))?;
    tokens::sync_address(conn, user_id, Channel::Phone, phone.as_ref().map(Phone::as_str))?;
    let after = get(conn, user_id)?.ok_or(AccountError::NoUser)?;
    Ok(Updated { before, after })
}

/// Sets the password hash and moves the credential version, so every pending reset made before
/// it is void.
pub(crate) fn set_password_hash(conn: &mut AnyConnection, user_id: i64, hash: &str) -> QueryResult<usize> {
    diesel::update(users::table.find(user_id))
        .set((
            users::password.eq(hash),
            users::credential_version.eq(users::credential_version + 1),
            // a new password voids every trusted browser (the factors themselves stay)
            users::factor_version.eq(users::factor_version + 1),
        ))
        .execute(conn)
}

/// The credential version of an active user (see the migration's `credential_version`).
pub(crate) fn credential_version(conn: &mut AnyConnection, user_id: i64) -> QueryResult<Option<i32>> {
    users::table
        .find(user_id)
        .filter(users::is_active.eq(true))
        .select(users::credential_version)
        .first(conn)
        .optional()
}

/// Sets the password hash only if the user is active and still at `version` (a compare-and-swap
/// that moves the version): false when something changed meanwhile or another writer won.
pub(crate) fn set_password_hash_if_version(
    conn: &mut AnyConnection,
    user_id: i64,
    version: i32,
    hash: &str,
) -> QueryResult<bool> {
    let changed = diesel::update(
        users::table.find(user_id).filter(users::is_active.eq(true)).filter(users::credential_version.eq(version)),
    )
    .set((
        users::password.eq(hash),
        users::credential_version.eq(users::credential_version + 1),
        // a new password voids every trusted browser (the factors themselves stay)
        users::factor_version.eq(users::factor_version + 1),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

pub(crate) fn record_login(conn: &mut AnyConnection, user_id: i64, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(users::table.find(user_id)).set(users::last_login.eq(Some(db_time(now)))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_fields_are_not_given_and_bad_ones_are_all_reported() {
        let new = NewUser::from_raw(Some("alice"), Some(" "), None, None).unwrap();
        assert!(new.username.is_some() && new.email.is_none() && new.phone.is_none());

        let errors = NewUser::from_raw(Some(".alice"), Some("nope"), Some("123"), None).unwrap_err();
        assert!(errors.get(Field::Username).is_some());
        assert_eq!(errors.get(Field::Email), Some("Enter a valid email address."));
        assert!(errors.get(Field::Phone).is_some());
        assert_eq!(errors.0.len(), 3);
    }

    #[test]
    fn a_lost_race_names_the_field_on_both_databases() {
        let message = |constraint: &str| {
            let errors = race_message(constraint).unwrap_or_else(|| panic!("{constraint} not mapped"));
            assert_eq!(errors.0.len(), 1, "{constraint}");
            errors.0[0].clone()
        };
        let similar = (Some(Field::Username), USERNAME_TOO_SIMILAR.to_owned());
        assert_eq!(message("users_username_skeleton_unique"), similar);
        assert_eq!(message("UNIQUE constraint failed: users.username_skeleton"), similar);
        let taken = |field| (Some(field), taken_message(field).to_owned());
        assert_eq!(message("users_username_unique"), taken(Field::Username));
        assert_eq!(message("users_email_unique"), taken(Field::Email));
        assert_eq!(message("users_phone_unique"), taken(Field::Phone));
        assert_eq!(message("UNIQUE constraint failed: users.username_key"), taken(Field::Username));
        assert_eq!(message("UNIQUE constraint failed: users.email_key"), taken(Field::Email));
        assert_eq!(message("UNIQUE constraint failed: users.phone"), taken(Field::Phone));
        assert!(race_message("sessions_pkey").is_none());
    }

    #[test]
    fn errors_print_on_one_line() {
        let mut errors = FieldErrors::default();
        errors.add(Some(Field::Email), taken_message(Field::Email));
        errors.add(None, NEED_AN_IDENTIFIER);
        let line = errors.to_string();
        assert_eq!(line, format!("email: A user with that email address already exists.; {NEED_AN_IDENTIFIER}"));
        assert_eq!(errors.general().count(), 1);
    }

    #[test]
    fn display_name_prefers_username_then_email_then_phone() {
        let mut user = User {
            id: 1,
            username: None,
            email: Some(Email::parse("a@x.org").unwrap()),
            phone: Some(Phone::parse("+12025551234", None).unwrap()),
            password: Sensitive("!".into()),
            is_active: true,
            is_staff: false,
            is_superuser: false,
            date_joined: Utc::now(),
            last_login: None,
        };
        assert_eq!(user.display_name(), "a@x.org");
        user.email = None;
        assert_eq!(user.display_name(), "+12025551234");
        user.username = Some(Username::parse("alice").unwrap());
        assert_eq!(user.display_name(), "alice");
        assert!(!user.has_usable_password());
    }
}
