//! The integration tests, in one binary (one build of the harness, one link): the real server
//! over HTTP on SQLite and PostgreSQL, the CLI, delivery, faults, fuzzing, races and pages.
//! Only tests that must own the process's log subscriber live apart (`tests/logs.rs`,
//! `tests/races.rs`).

#[macro_use]
mod common;
mod samples;

mod accounts;
mod activity;
mod api;
mod cli;
mod code_sign_in;
mod delete_export;
mod delivery;
mod faults;
mod fuzz;
mod hardening;
mod metrics;
mod pages;
mod passkeys;
mod passkeys_browser;
mod review;
mod scale_out;
mod security;
mod sessions;
mod shedding;
mod two_factor;
mod two_factor_browser;
mod views;
mod web;
mod web_flows;
