//! The seed's API, with no HTTP in here: `create_user`, `create_superuser`, `authenticate`,
//! look-ups, and email/phone tokens with `generate_password` / `check_password`.
//!
//! Every call is blocking (database and argon2 work): async callers run it on a blocking
//! thread (`web::block`, `spawn_blocking`).

pub mod activity;
pub mod browsers;
pub mod factors;
mod hash_pool;
pub mod passkeys;
mod passwords;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

pub use factors::{RecoveryCode, SecondFactorCheck, TotpSecret, TwoFactorStatus};
pub use hash_pool::{Admission, Busy, Load as HashLoad};
pub use passwords::Passwords;
pub use throttle::Throttled;
pub use tokens::{Channel, CheckError, OtpCode, OtpToken, Purpose};
pub use users::{AccountError, Change, CreateUserError, Field, FieldErrors, IdentifierChanges, NewUser, Updated, User};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::db::{Pool, PooledConnection};
use crate::domain::{Email, Identifier, Phone, Region, Username};

/// The account service: cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct Accounts {
    pool: Pool,
    passwords: Arc<Passwords>,
    keys: Arc<tokens::CodeKeys>,
    clock: Arc<dyn Clock>,
    default_region: Option<Region>,
}

impl Accounts {
    pub fn new(pool: Pool, settings: &Settings) -> anyhow::Result<Accounts> {
        Ok(Accounts {
            pool,
            passwords: Arc::new(Passwords::new(settings.hash_cost, settings.hash_pool)?),
            keys: Arc::new(tokens::CodeKeys {
                secret: settings.secret_key.clone(),
                length: settings.otp.length,
                ttl: settings.otp.ttl,
            }),
            clock: Arc::new(SystemClock),
            default_region: settings.default_region,
        })
    }

    /// Replaces the clock (tests move time instead of sleeping).
    pub fn with_clock(mut self, clock: impl Clock) -> Accounts {
        self.clock = Arc::new(clock);
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn default_region(&self) -> Option<Region> {
        self.default_region
    }

    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    pub(crate) fn keys(&self) -> &tokens::CodeKeys {
        &self.keys
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    pub(crate) fn conn(&self) -> anyhow::Result<PooledConnection> {
        self.pool.get().context("database connection")
    }

    /// Creates a user with any non-empty subset of identifiers. No password-strength rules run
    /// here (as in the seed); a `None` password makes the account's password unusable.
    pub fn create_user(&self, new: NewUser) -> Result<User, CreateUserError> {
        let is_staff = new.is_staff.unwrap_or(false);
        let is_superuser = new.is_superuser.unwrap_or(false);
        self.create(new, is_staff, is_superuser)
    }

    /// Like `create_user`, with `is_staff` and `is_superuser` set; refuses either set to false.
    pub fn create_superuser(&self, new: NewUser) -> Result<User, CreateUserError> {
        if new.is_staff == Some(false) {
            return Err(CreateUserError::Refused("Superuser must have is_staff=True."));
        }
        if new.is_superuser == Some(false) {
            return Err(CreateUserError::Refused("Superuser must have is_superuser=True."));
        }
        self.create(new, true, true)
    }

    fn create(&self, new: NewUser, is_staff: bool, is_superuser: bool) -> Result<User, CreateUserError> {
        let hash = match &new.password {
            Some(password) => self.passwords.hash(&password.0)?,
            None => Passwords::unusable(),
        };
        let mut conn = self.conn()?;
        users::insert(&mut conn, &new, &hash, is_staff, is_superuser, self.now())
    }

    pub fn get_user(&self, id: i64) -> anyhow::Result<Option<User>> {
        Ok(users::get(&mut *self.conn()?, id)?)
    }

    pub fn find_user(&self, identifier: &Identifier) -> anyhow::Result<Option<User>> {
        Ok(users::find(&mut *self.conn()?, identifier)?)
    }

    /// The seed's `get_by_natural_key`: at least one identifier; the user must match all given.
    pub fn get_by_natural_key(
        &self,
        username: Option<&Username>,
        email: Option<&Email>,
        phone: Option<&Phone>,
    ) -> anyhow::Result<Option<User>> {
        anyhow::ensure!(
            username.is_some() || email.is_some() || phone.is_some(),
            "You must supply at least one of username, email or phone number"
        );
        Ok(users::find_by_natural_key(&mut *self.conn()?, username, email, phone)?)
    }

    /// The user whose identifier (username, email or phone, inferred from the text) and password
    /// match, if active. An unknown or unparsable identifier costs the same argon2 work as a
    /// known one, so timing tells nothing.
    pub fn authenticate(&self, identifier: &str, password: &str) -> anyhow::Result<Option<User>> {
        match Identifier::infer(identifier, self.default_region) {
            Ok(identifier) => self.authenticate_identifier(&identifier, password),
            Err(_) => {
                self.passwords.verify_dummy(password)?;
                Ok(None)
            }
        }
    }

    pub fn authenticate_identifier(&self, identifier: &Identifier, password: &str) -> anyhow::Result<Option<User>> {
        let user = self.find_user(identifier)?;
        let Some(user) = user else {
            self.passwords.verify_dummy(password)?;
            return Ok(None);
        };
        if !self.passwords.verify(&user.password.0, password)? || !user.is_active {
            return Ok(None);
        }
        if self.passwords.needs_rehash(&user.password.0) {
            // today's cost for a hash made under older parameters
            self.set_password(user.id, Some(password))?;
        }
        Ok(Some(user))
    }

    /// Changes, removes or keeps each identifier (see [`Change`]); at least one must remain.
    pub fn update_identifiers(&self, user_id: i64, changes: IdentifierChanges) -> Result<Updated, AccountError> {
        users::update_identifiers(&mut *self.conn()?, user_id, changes)
    }

    /// Records a successful sign-in (Django's `update_last_login`).
    pub fn record_login(&self, user_id: i64) -> anyhow::Result<()> {
        users::record_login(&mut *self.conn()?, user_id, self.now())?;
        Ok(())
    }

    /// Sets (or with `None`, makes unusable) the user's password. No strength rules: the web
    /// layer parses a [`crate::domain::password::NewPassword`] first.
    pub fn set_password(&self, user_id: i64, password: Option<&str>) -> anyhow::Result<()> {
        let hash = match password {
            Some(password) => self.passwords.hash(password)?,
            None => Passwords::unusable(),
        };
        users::set_password_hash(&mut *self.conn()?, user_id, &hash)?;
        Ok(())
    }

    /// The seed's `EmailToken` of a user, if the user has an email address.
    pub fn email_token(&self, user_id: i64) -> anyhow::Result<Option<OtpToken>> {
        Ok(tokens::find(&mut *self.conn()?, user_id, Channel::Email)?)
    }

    /// The seed's `PhoneToken` of a user, if the user has a phone number.
    pub fn phone_token(&self, user_id: i64) -> anyhow::Result<Option<OtpToken>> {
        Ok(tokens::find(&mut *self.conn()?, user_id, Channel::Phone)?)
    }

    /// Makes a new code for the token (replacing any earlier one, resetting the failure count)
    /// and returns it: the only time the code exists outside the message that carries it.
    pub fn generate_password(&self, token: &OtpToken) -> Result<OtpCode, CheckError> {
        let mut conn = self.conn()?;
        tokens::generate(&mut conn, token.id, Purpose::Verify, &self.keys, self.now())
    }

    /// `Ok(true)`: the code was right, the address is verified and the code spent.
    /// `Ok(false)`: wrong, expired, spent or void; counted, and the backoff window opens.
    /// `Err(CheckError::Throttled)`: inside the window; nothing was checked or counted.
    pub fn check_password(&self, token: &OtpToken, code: &str) -> Result<bool, CheckError> {
        let mut conn = self.conn()?;
        tokens::check(&mut conn, token.id, code, Purpose::Verify, &self.keys, self.now())
    }
}
