//! One field that takes "username, email or phone" (sign-in, password reset).
//!
//! The seed's rule: it is a username if it is a valid username, else an email if it contains
//! `@`, else a phone number. Usernames can never contain `@` or start with `+` or a digit, so
//! the reading is never ambiguous.

use super::{Email, Invalid, Phone, Region, Username};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    Username(Username),
    Email(Email),
    Phone(Phone),
}

impl Identifier {
    /// Surrounding whitespace (an autofill habit) is ignored.
    pub fn infer(raw: &str, default_region: Option<Region>) -> Result<Identifier, Invalid> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Invalid::new("Enter your username, email address or phone number."));
        }
        if let Ok(username) = Username::parse(raw) {
            Ok(Identifier::Username(username))
        } else if raw.contains('@') {
            Email::parse(raw).map(Identifier::Email)
        } else {
            Phone::parse(raw, default_region).map(Identifier::Phone)
        }
    }

    /// The normalized form that throttles and look-ups are keyed on; the prefix keeps the three
    /// kinds apart.
    pub fn key(&self) -> String {
        match self {
            Identifier::Username(u) => format!("username:{}", u.key()),
            Identifier::Email(e) => format!("email:{}", e.key()),
            Identifier::Phone(p) => format!("phone:{}", p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(raw: &str) -> Result<Identifier, Invalid> {
        Identifier::infer(raw, None)
    }

    #[test]
    fn a_valid_username_is_a_username() {
        assert!(matches!(infer("alice"), Ok(Identifier::Username(_))));
        assert!(matches!(infer(" alice.smith "), Ok(Identifier::Username(_))));
    }

    #[test]
    fn otherwise_at_sign_means_email() {
        assert!(matches!(infer("Alice@Example.org"), Ok(Identifier::Email(_))));
        assert!(infer("alice@").is_err());
    }

    #[test]
    fn otherwise_a_phone() {
        assert!(matches!(infer("+1 202 555 1234"), Ok(Identifier::Phone(_))));
        let us = Some(Region::parse("US").unwrap());
        assert!(matches!(Identifier::infer("2025551234", us), Ok(Identifier::Phone(_))));
        assert!(infer("2025551234").is_err());
        assert!(infer("-x").is_err());
        assert!(infer("").is_err());
    }

    #[test]
    fn keys_are_normalized_and_distinct_per_kind() {
        assert_eq!(infer("Alice").unwrap().key(), infer("ALICE").unwrap().key());
        assert_eq!(infer("a@X.org").unwrap().key(), infer("A@x.ORG").unwrap().key());
        assert_eq!(infer("+1 (202) 555-1234").unwrap().key(), infer("+12025551234").unwrap().key());
        assert_ne!(infer("alice").unwrap().key(), infer("alice@x.org").unwrap().key());
    }
}
