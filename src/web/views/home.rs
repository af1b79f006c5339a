//! `GET /`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, Page};

/// `GET /`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "home.html")]
pub struct HomeView {
    pub chrome: Chrome,
}

page_with_chrome!(HomeView);
