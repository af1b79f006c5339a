//! One-time codes: django-flex-user's EmailToken and PhoneToken.
//!
//! Each email and phone of a user has one token row. `generate_password` makes a code, stores
//! only its HMAC (keyed by the deployment secret) and returns the code once; `check_password`
//! spends it. The rules (CONTRACT.md, "One-time codes") live in [`TokenState`], a pure value,
//! so they are tested step by step without a database; the database side only applies a new
//! state with compare-and-swap on `version`, so concurrent checks never lose a failure and a
//! code never succeeds twice. Each code is bound to the [`Purpose`] it was sent for: a code sent
//! to verify an address does not complete a reset, and a reset code verifies nothing.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use rand::RngExt as _;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::throttle::{Backoff, CODE_BACKOFF_CAP, Throttled};
use crate::db::schema::otp_tokens;
use crate::db::{AnyConnection, db_time};
use crate::secret::SecretKey;

/// A code is void after this many failed checks against it.
pub const MAX_FAILURES_PER_CODE: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Phone,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Phone => "phone",
        }
    }
}

/// A name that is not one of ours (a channel or a purpose): refused, never defaulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind}: {text:?}")]
pub struct UnknownName {
    kind: &'static str,
    text: String,
}

impl FromStr for Channel {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Channel, UnknownName> {
        match text {
            "email" => Ok(Channel::Email),
            "phone" => Ok(Channel::Phone),
            _ => Err(UnknownName { kind: "channel", text: text.to_owned() }),
        }
    }
}

/// What a code was sent for; it does that and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Proves the person owns an email address or phone number.
    Verify,
    /// Lets the person set a new password.
    PasswordReset,
    /// Signs the person in without a password.
    SignIn,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::PasswordReset => "reset",
            Purpose::SignIn => "sign-in",
        }
    }
}

impl FromStr for Purpose {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Purpose, UnknownName> {
        match text {
            "verify" => Ok(Purpose::Verify),
            "reset" => Ok(Purpose::PasswordReset),
            "sign-in" => Ok(Purpose::SignIn),
            _ => Err(UnknownName { kind: "code purpose", text: text.to_owned() }),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A freshly made code: shown to nobody but the message that carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    /// `length` uniformly random decimal digits.
    pub fn generate(length: usize) -> OtpCode {
        let mut rng = rand::rng();
        OtpCode((0..length).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(***)")
    }
}

/// A token as read from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpToken {
    pub id: i64,
    pub user_id: i64,
    pub channel: Channel,
    /// The email address or E.164 phone number the code goes to.
    pub address: String,
    pub state: TokenState,
    version: i32,
}

/// Everything about a token that the rules change.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TokenState {
    pub verified: bool,
    pub backoff: Backoff,
    code_hash: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// What the live code was sent for.
    pub purpose: Option<Purpose>,
}

impl fmt::Debug for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenState")
            .field("verified", &self.verified)
            .field("backoff", &self.backoff)
            .field("has_code", &self.code_hash.is_some())
            .field("expires_at", &self.expires_at)
            .field("purpose", &self.purpose)
            .finish()
    }
}

impl TokenState {
    /// True when a code was made, is unspent, unexpired and not void.
    pub fn has_live_code(&self, now: DateTime<Utc>) -> bool {
        self.code_hash.is_some() && self.expires_at.is_some_and(|at| now < at)
    }

    /// A new code replaces the old one and, as in the seed, resets the failure count.
    pub fn with_new_code(&self, code_hash: String, purpose: Purpose, now: DateTime<Utc>, ttl: Duration) -> TokenState {
        TokenState {
            verified: self.verified,
            backoff: Backoff::default(),
            code_hash: Some(code_hash),
            expires_at: Some(now + ttl),
            purpose: Some(purpose),
        }
    }

    /// The outcome of checking, for `purpose`, a code whose keyed hash is `typed_hash`: `Err`
    /// inside a backoff window (nothing counted), else the new state and whether it was right.
    ///
    /// A verify code that is right verifies the address. A reset or sign-in code that is right
    /// only proves the account: the address counts as verified when the reset (or sign-in)
    /// completes (a proven but abandoned reset verifies nothing). Reset and sign-in checks are
    /// not refused by this token's window: their backoff is kept per typed identifier by the
    /// caller, the same for every account, so two identifiers of one account cannot be linked
    /// through a shared window. Their failures still count here, so the code is void after
    /// [`MAX_FAILURES_PER_CODE`] however it is typed.
    pub fn check(
        &self,
        typed_hash: &str,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<(TokenState, bool), Throttled> {
        if purpose == Purpose::Verify {
            self.backoff.check(now)?;
        }
        let right = self.has_live_code(now)
            && self.purpose == Some(purpose)
            && self
                .code_hash
                .as_deref()
                .is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(typed_hash.as_bytes())));
        if right {
            // the code is spent; only a verify code verifies
            let verified = self.verified || purpose == Purpose::Verify;
            return Ok((TokenState { verified, ..TokenState::default() }, true));
        }
        let backoff = self.backoff.fail(now, CODE_BACKOFF_CAP);
        let void = backoff.failures >= MAX_FAILURES_PER_CODE;
        let state = if void {
            TokenState { verified: self.verified, backoff, ..TokenState::default() }
        } else {
            TokenState { backoff, ..self.clone() }
        };
        Ok((state, false))
    }
}

/// The seed's `TimeoutError`, plus the ways a check can fail to happen at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// The address was removed (or the token never existed).
    #[error("no such token")]
    NoToken,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for CheckError {
    fn from(e: diesel::result::Error) -> Self {
        CheckError::Unexpected(e.into())
    }
}

/// How codes are keyed and timed.
#[derive(Debug, Clone)]
pub struct CodeKeys {
    pub secret: SecretKey,
    pub length: usize,
    pub ttl: Duration,
}

impl CodeKeys {
    /// HMAC-SHA256 over the token and address it was made for, so a stored hash is useless
    /// without the secret and cannot be moved to another token.
    pub fn hash(&self, token_id: i64, address: &str, code: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose()).expect("HMAC takes any key length");
        mac.update(b"flex-user otp v1\0");
        mac.update(&token_id.to_be_bytes());
        mac.update(address.as_bytes());
        mac.update(b"\0");
        mac.update(normalize_typed(code).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// People type codes with spaces or dashes ("123 456"); those are not part of it.
fn normalize_typed(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect()
}

#[derive(Queryable)]
struct Row {
    id: i64,
    user_id: i64,
    channel: String,
    address: String,
    verified: bool,
    failure_count: i32,
    timeout_until: Option<NaiveDateTime>,
    code_hash: Option<String>,
    expires_at: Option<NaiveDateTime>,
    version: i32,
    code_purpose: Option<String>,
}

impl TryFrom<Row> for OtpToken {
    type Error = UnknownName;

    fn try_from(r: Row) -> Result<Self, UnknownName> {
        Ok(OtpToken {
            id: r.id,
            user_id: r.user_id,
            channel: r.channel.parse()?,
            address: r.address,
            state: TokenState {
                verified: r.verified,
                backoff: Backoff {
                    failures: r.failure_count.max(0) as u32,
                    until: r.timeout_until.map(|t| t.and_utc()),
                },
                code_hash: r.code_hash,
                expires_at: r.expires_at.map(|t| t.and_utc()),
                purpose: r.code_purpose.as_deref().map(str::parse).transpose()?,
            },
            version: r.version,
        })
    }
}

/// A row the schema's CHECKs should have kept out: an error, never a guess.
fn parse_row(row: Option<Row>) -> QueryResult<Option<OtpToken>> {
    row.map(OtpToken::try_from).transpose().map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

pub(crate) fn find(conn: &mut AnyConnection, user_id: i64, channel: Channel) -> QueryResult<Option<OtpToken>> {
    otp_tokens::table
        .filter(otp_tokens::user_id.eq(user_id))
        .filter(otp_tokens::channel.eq(channel.as_str()))
        .first::<Row>(conn)
        .optional()
        .and_then(parse_row)
}

pub(crate) fn find_by_id(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<OtpToken>> {
    otp_tokens::table.find(id).first::<Row>(conn).optional().and_then(parse_row)
}

/// Creates the token for a new address, or resets it (unverified, no code) when the address
/// changed; removes it when the address is gone. An unchanged address keeps its token.
pub(crate) fn sync_address(
    conn: &mut AnyConnection,
    user_id: i64,
    channel: Channel,
    address: Option<&str>,
) -> QueryResult<()> {
    let existing = find(conn, user_id, channel)?;
    match (existing, address) {
        (None, None) => Ok(()),
        (Some(token), None) => diesel::delete(otp_tokens::table.find(token.id)).execute(conn).map(drop),
        (None, Some(address)) => diesel::insert_into(otp_tokens::table)
            .values((
                otp_tokens::user_id.eq(user_id),
                otp_tokens::channel.eq(channel.as_str()),
                otp_tokens::address.eq(address),
            ))
            .execute(conn)
            .map(drop),
        (Some(token), Some(address)) if token.address == address => Ok(()),
        (Some(token), Some(address)) => {
            apply(conn, &token, &TokenState::default(), Some(address))?;
            Ok(())
        }
    }
}

/// Writes `state` if the token is still at the version it was read at; false when another
/// writer got there first.
fn apply(conn: &mut AnyConnection, token: &OtpToken, state: &TokenState, address: Option<&str>) -> QueryResult<bool> {
    let changed = diesel::update(
        otp_tokens::table.filter(otp_tokens::id.eq(token.id)).filter(otp_tokens::version.eq(token.version)),
    )
    .set((
        otp_tokens::address.eq(address.unwrap_or(&token.address)),
        otp_tokens::verified.eq(state.verified),
        otp_tokens::failure_count.eq(state.backoff.failures.min(i32::MAX as u32) as i32),
        otp_tokens::timeout_until.eq(state.backoff.until.map(db_time)),
        otp_tokens::code_hash.eq(state.code_hash.as_deref()),
        otp_tokens::expires_at.eq(state.expires_at.map(db_time)),
        otp_tokens::code_purpose.eq(state.purpose.map(Purpose::as_str)),
        otp_tokens::version.eq(token.version.wrapping_add(1)),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Re-reads and retries when a concurrent writer won; each round makes progress for someone,
/// so the bound is only a guard.
const CAS_ATTEMPTS: usize = 64;

pub(crate) fn generate(
    conn: &mut AnyConnection,
    token_id: i64,
    purpose: Purpose,
    keys: &CodeKeys,
    now: DateTime<Utc>,
) -> Result<OtpCode, CheckError> {
    for _ in 0..CAS_ATTEMPTS {
        let token = find_by_id(conn, token_id)?.ok_or(CheckError::NoToken)?;
        let code = OtpCode::generate(keys.length);
        let hash = keys.hash(token.id, &token.address, code.as_str());
        let state = token.state.with_new_code(hash, purpose, now, keys.ttl);
        if apply(conn, &token, &state, None)? {
            return Ok(code);
        }
    }
    Err(anyhow::anyhow!("token {token_id}: too much contention").into())
}

pub(crate) fn check(
    conn: &mut AnyConnection,
    token_id: i64,
    typed: &str,
    purpose: Purpose,
    keys: &CodeKeys,
    now: DateTime<Utc>,
) -> Result<bool, CheckError> {
    for _ in 0..CAS_ATTEMPTS {
        let token = find_by_id(conn, token_id)?.ok_or(CheckError::NoToken)?;
        let (state, right) = token.state.check(&keys.hash(token.id, &token.address, typed), purpose, now)?;
        if apply(conn, &token, &state, None)? {
            return Ok(right);
        }
    }
    Err(anyhow::anyhow!("token {token_id}: too much contention").into())
}

/// Marks the address verified (a completed reset proved it); any live code stays as it is.
pub(crate) fn mark_verified(conn: &mut AnyConnection, token_id: i64) -> QueryResult<usize> {
    diesel::update(otp_tokens::table.find(token_id))
        .set((otp_tokens::verified.eq(true), otp_tokens::version.eq(otp_tokens::version + 1)))
        .execute(conn)
}

#[cfg(test)]
mod tests {
    //! The seed's token behaviour, step by step, with time as plain values.
    use super::*;

    const TTL: Duration = Duration::minutes(15);

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn issued(at: DateTime<Utc>) -> TokenState {
        TokenState::default().with_new_code("right".into(), Purpose::Verify, at, TTL)
    }

    fn reset_code(at: DateTime<Utc>) -> TokenState {
        TokenState::default().with_new_code("right".into(), Purpose::PasswordReset, at, TTL)
    }

    #[test]
    fn a_code_does_only_what_it_was_sent_for() {
        // a verify code does not prove a reset, and costs a failure
        let (s, ok) = issued(t(0)).check("right", Purpose::PasswordReset, t(0)).unwrap();
        assert!(!ok && !s.verified);
        assert_eq!(s.backoff.failures, 1);
        // a reset code does not verify the address
        let (s, ok) = reset_code(t(0)).check("right", Purpose::Verify, t(0)).unwrap();
        assert!(!ok && !s.verified);
        // a right reset code is spent and proves the reset, but verifies nothing by itself
        let (s, ok) = reset_code(t(0)).check("right", Purpose::PasswordReset, t(0)).unwrap();
        assert!(ok && !s.verified);
        assert!(!s.has_live_code(t(0)));
        assert!(!s.check("right", Purpose::PasswordReset, t(1)).unwrap().1, "spent");
    }

    #[test]
    fn a_sign_in_code_signs_in_only() {
        let sign_in = TokenState::default().with_new_code("right".into(), Purpose::SignIn, t(0), TTL);
        // neither a reset nor a verification
        assert!(!sign_in.check("right", Purpose::PasswordReset, t(0)).unwrap().1);
        assert!(!sign_in.check("right", Purpose::Verify, t(0)).unwrap().1);
        // a reset code does not sign in
        assert!(!reset_code(t(0)).check("right", Purpose::SignIn, t(0)).unwrap().1);
        // right: spent, and verified only when the sign-in completes
        let (s, ok) = sign_in.check("right", Purpose::SignIn, t(0)).unwrap();
        assert!(ok && !s.verified && !s.has_live_code(t(0)));
    }

    #[test]
    fn reset_checks_ignore_the_tokens_window_but_void_the_code_after_ten() {
        let mut s = reset_code(t(0));
        for n in 1..=MAX_FAILURES_PER_CODE {
            // all at the same instant: the caller keeps the reset backoff, not the token
            let (next, ok) = s.check("wrong", Purpose::PasswordReset, t(0)).unwrap();
            assert!(!ok);
            assert_eq!(next.backoff.failures, n);
            s = next;
        }
        assert!(!s.has_live_code(t(0)), "void after ten failures");
        assert!(!s.check("right", Purpose::PasswordReset, t(0)).unwrap().1);
    }

    #[test]
    fn names_parse_strictly() {
        assert_eq!("email".parse::<Channel>(), Ok(Channel::Email));
        assert_eq!("phone".parse::<Channel>(), Ok(Channel::Phone));
        assert!("Email".parse::<Channel>().is_err());
        assert!("".parse::<Channel>().is_err());
        assert_eq!("reset".parse::<Purpose>(), Ok(Purpose::PasswordReset));
        assert_eq!("verify".parse::<Purpose>(), Ok(Purpose::Verify));
        assert_eq!("sign-in".parse::<Purpose>(), Ok(Purpose::SignIn));
        assert!("signin".parse::<Purpose>().is_err());
    }

    #[test]
    fn generate_wrong_wrong_window_then_right() {
        let s = issued(t(0));
        assert!(s.has_live_code(t(0)));

        // wrong → refused for 1 s
        let (s, ok) = s.check("wrong", Purpose::Verify, t(0)).unwrap();
        assert!(!ok);
        assert_eq!(s.backoff, Backoff { failures: 1, until: Some(t(1)) });

        // inside the window even the right code is refused and nothing is counted
        let refused = s.check("right", Purpose::Verify, t(0)).unwrap_err();
        assert_eq!((refused.until, refused.failures), (t(1), 1));

        // wrong again → 2 s
        let (s, ok) = s.check("wrong", Purpose::Verify, t(1)).unwrap();
        assert!(!ok);
        assert_eq!(s.backoff, Backoff { failures: 2, until: Some(t(3)) });
        assert!(s.check("right", Purpose::Verify, t(2)).is_err());

        // right after the window → verified, count reset, code spent
        let (s, ok) = s.check("right", Purpose::Verify, t(3)).unwrap();
        assert!(ok);
        assert!(s.verified);
        assert_eq!(s.backoff, Backoff::default());
        assert!(!s.has_live_code(t(3)));

        // reuse of a spent code fails
        let (s, ok) = s.check("right", Purpose::Verify, t(4)).unwrap();
        assert!(!ok);
        assert!(s.verified, "a failed check does not unverify");
        assert_eq!(s.backoff.failures, 1);
    }

    #[test]
    fn an_expired_code_fails_and_counts() {
        let s = issued(t(0));
        assert!(s.has_live_code(t(899)));
        assert!(!s.has_live_code(t(900)));
        let (s, ok) = s.check("right", Purpose::Verify, t(900)).unwrap();
        assert!(!ok);
        assert_eq!(s.backoff.failures, 1);
    }

    #[test]
    fn checking_with_no_code_counts_as_a_failure() {
        let (s, ok) = TokenState::default().check("anything", Purpose::Verify, t(0)).unwrap();
        assert!(!ok);
        assert_eq!(s.backoff.failures, 1);
    }

    #[test]
    fn void_after_ten_failures_and_capped_at_an_hour() {
        let mut s = issued(t(0));
        let mut now = t(0);
        for n in 1..=MAX_FAILURES_PER_CODE {
            let (next, ok) = s.check("wrong", Purpose::Verify, now).unwrap();
            assert!(!ok);
            assert_eq!(next.backoff.failures, n);
            assert_eq!(next.backoff.until, Some(now + Duration::seconds(1 << (n - 1))));
            s = next;
            now = s.backoff.until.unwrap();
        }
        // ten failures: the code is void, so even the right one now fails
        assert!(!s.has_live_code(now));
        let (s, ok) = s.check("right", Purpose::Verify, now).unwrap();
        assert!(!ok);
        assert_eq!(s.backoff.failures, 11);
        // the window doubles until it is capped at one hour
        let mut s = s;
        for _ in 0..5 {
            now = s.backoff.until.unwrap();
            s = s.check("wrong", Purpose::Verify, now).unwrap().0;
        }
        assert_eq!(s.backoff.failures, 16);
        assert_eq!(s.backoff.until, Some(now + Duration::hours(1)));
    }

    #[test]
    fn a_new_code_resets_the_count_and_window() {
        let (s, _) = issued(t(0)).check("wrong", Purpose::Verify, t(0)).unwrap();
        let s = s.with_new_code("fresh".into(), Purpose::Verify, t(0), TTL);
        assert_eq!(s.backoff, Backoff::default());
        assert!(s.check("fresh", Purpose::Verify, t(0)).unwrap().1);
    }

    #[test]
    fn codes_are_digits_of_the_asked_length() {
        for len in 4..=10 {
            let code = OtpCode::generate(len);
            assert_eq!(code.as_str().len(), len);
            assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(format!("{:?}", OtpCode::generate(6)), "OtpCode(***)");
    }

    #[test]
    fn hashes_are_keyed_and_bound_to_the_token() {
        let keys = |byte| CodeKeys { secret: SecretKey::parse(&hex::encode([byte; 32])).unwrap(), length: 6, ttl: TTL };
        let (a, b) = (keys(1), keys(2));
        assert_eq!(a.hash(1, "a@x.org", "123456"), a.hash(1, "a@x.org", "123 456"));
        assert_ne!(a.hash(1, "a@x.org", "123456"), b.hash(1, "a@x.org", "123456"));
        assert_ne!(a.hash(1, "a@x.org", "123456"), a.hash(2, "a@x.org", "123456"));
        assert_ne!(a.hash(1, "a@x.org", "123456"), a.hash(1, "b@x.org", "123456"));
        assert!(!a.hash(1, "a@x.org", "123456").contains("123456"));
    }
}
