//! flex-user: sign up and sign in with a username, an email address or a phone number.
//!
//! Layers, from the inside out: `domain` (parsing and rules), `db` (backend, pool, schema,
//! migrations), `accounts` (the seed's API: users, passwords, one-time codes), `web` (HTTP).

pub mod accounts;
pub mod clock;
pub mod config;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod flows;
pub mod metrics;
pub mod secret;
pub mod web;

pub use accounts::{Accounts, NewUser, User};
