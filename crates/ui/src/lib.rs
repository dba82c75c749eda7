//! orchestrator-ui: the pages people see — the provider's login page, the
//! gateway's "access denied" and sign-out pages, and every error page — and the
//! one way they are sent (headers, CSP).
//!
//! Pages are [minijinja] templates with HTML auto-escaping. The built-in set
//! (this crate's `templates/` folder, also the documented example) can be
//! overridden file by file from a folder named in the config (`ui.templatesDir`);
//! [`Pages::from_dir`] checks every override by compiling and rendering it
//! with sample values, so a broken template is a config error with the file
//! and line, never a broken page. A template that still fails at request
//! time falls back to the built-in one.

#![forbid(unsafe_code)]

mod pages;
mod response;
mod views;

pub use pages::{Pages, PagesError, PagesHandle};
pub use response::{FormAction, html};
pub use views::{
    ConfirmView, ErrorView, ForbiddenView, LoginView, SignInOption, SignedOutView, View,
};
