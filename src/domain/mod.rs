//! Domain rules: the values people type, parsed into types that can only hold valid data.
//!
//! Nothing past the web or CLI edge handles an identifier as a bare `String`: it is parsed here
//! once, and the type carries the proof.

pub mod client;
pub mod email;
pub mod identifier;
pub mod password;
pub mod phone;
pub mod username;

pub use client::{RequestContext, UserAgent};
pub use email::Email;
pub use identifier::Identifier;
pub use phone::{Phone, Region};
pub use username::Username;

/// A typed value that is not acceptable, with the message to show next to its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
