//! The template set: built-in, or overridden file by file from a folder.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};
use orchestrator_http::request_id::RequestId;

use crate::views::{ConfirmView, ErrorView, ForbiddenView, LoginView, SignedOutView, View};

/// The built-in templates; a templates folder may replace each by its name.
const BUILTIN: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("style.css", include_str!("../templates/style.css")),
    ("login.html", include_str!("../templates/login.html")),
    ("error.html", include_str!("../templates/error.html")),
    (
        "forbidden.html",
        include_str!("../templates/forbidden.html"),
    ),
    ("confirm.html", include_str!("../templates/confirm.html")),
    (
        "signed_out.html",
        include_str!("../templates/signed_out.html"),
    ),
];

/// Largest template file read from a folder.
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

/// Why a templates folder cannot be used. Messages name the file and, for
/// template errors, the line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagesError {
    /// The folder or a file in it cannot be read.
    #[error("{path}: {reason}")]
    Read {
        /// The folder or file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A file that is not the name of a built-in template (a typo would otherwise
    /// be silently ignored).
    #[error("{file}: not a template this version knows; the files are {known}")]
    Unknown {
        /// The file name.
        file: String,
        /// The known names.
        known: String,
    },
    /// A template that does not compile or render.
    #[error("{file}: {detail}")]
    Template {
        /// The file name.
        file: String,
        /// minijinja's description, with the line.
        detail: String,
    },
}

/// A compiled template set.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
    /// The files that came from a folder rather than the built-ins, with
    /// their text.
    overridden: Vec<(String, String)>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Every template escapes for HTML, `style.css` too: it is inlined in a
    // `<style>` element, where a value could otherwise close it.
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    // minijinja's HTML escaping also writes `/` as `&#x2f;`, which breaks
    // nothing in a browser but everything that reads a form's `action`
    // literally; `& < > " '` are what element and quoted-attribute contexts need.
    env.set_formatter(|out, state, value| {
        if state.auto_escape() == AutoEscape::None
            || value.is_safe()
            || value.is_undefined()
            || value.is_none()
        {
            return minijinja::escape_formatter(out, state, value);
        }
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        out.write_str(&escape_html(&text))
            .map_err(minijinja::Error::from)
    });
    // A misspelt variable is an error (caught when the folder is loaded), but
    // `{% if message %}` on a value that is not there is false.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env
}

fn builtin_env() -> &'static Environment<'static> {
    static BUILT_IN: OnceLock<Environment<'static>> = OnceLock::new();
    BUILT_IN.get_or_init(|| {
        let mut env = environment();
        for (name, text) in BUILTIN {
            // The built-ins are checked by this crate's tests; one that did
            // not compile would only be missing, and rendering says so.
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "built-in template does not compile");
            }
        }
        env
    })
}

impl Pages {
    /// The built-in pages.
    pub fn builtin() -> Self {
        Self {
            env: builtin_env().clone(),
            overridden: Vec::new(),
        }
    }

    /// The built-in pages with every file of `dir` replacing the one of its
    /// name. Files whose names start with `.` are skipped (a mounted
    /// ConfigMap's `..data` links). Every page is rendered once with sample
    /// values, so what loads also renders.
    pub fn from_dir(dir: &Path) -> Result<Self, PagesError> {
        let read_err = |path: &Path, e: std::io::Error| PagesError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut env = builtin_env().clone();
        let mut overridden = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if file.starts_with('.') || path.is_dir() {
                continue;
            }
            let Some(name) = BUILTIN
                .iter()
                .map(|(name, _)| *name)
                .find(|known| *known == file)
            else {
                let known: Vec<&str> = BUILTIN.iter().map(|(name, _)| *name).collect();
                return Err(PagesError::Unknown {
                    file: file.to_owned(),
                    known: known.join(", "),
                });
            };
            let size = std::fs::metadata(&path)
                .map_err(|e| read_err(&path, e))?
                .len();
            if size > MAX_TEMPLATE_BYTES {
                return Err(PagesError::Read {
                    path: path.display().to_string(),
                    reason: format!("larger than {} KiB", MAX_TEMPLATE_BYTES / 1024),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
            env.add_template_owned(name, text.clone())
                .map_err(|e| template_error(name, &e))?;
            overridden.push((name.to_owned(), text));
        }
        let pages = Self { env, overridden };
        pages.check::<LoginView<'_>>()?;
        pages.check::<ErrorView<'_>>()?;
        pages.check::<ForbiddenView<'_>>()?;
        pages.check::<ConfirmView<'_>>()?;
        pages.check::<SignedOutView<'_>>()?;
        Ok(pages)
    }

    /// The built-in pages, or those of `dir` when one is given.
    pub fn load(dir: Option<&Path>) -> Result<Self, PagesError> {
        dir.map_or_else(|| Ok(Self::builtin()), Self::from_dir)
    }

    /// The files that replace built-ins.
    pub fn overridden(&self) -> Vec<&str> {
        self.overridden
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// True when both sets were made from the same files with the same text
    /// (a reload that would change nothing).
    pub fn sources_equal(&self, other: &Pages) -> bool {
        self.overridden == other.overridden
    }

    /// Renders `V`'s template with every value present, then with every
    /// optional value absent, so both branches of each `{% if %}` are tried.
    fn check<V: View>(&self) -> Result<(), PagesError> {
        for sample in [V::sample(), V::sparse()] {
            let ctx = context! {
                request_id => "0123456789abcdef0123456789abcdef",
                ..Value::from_serialize(sample)
            };
            self.env
                .get_template(V::TEMPLATE)
                .and_then(|t| t.render(ctx))
                .map_err(|e| template_error_in(Some(&self.env), V::TEMPLATE, &e))?;
        }
        Ok(())
    }

    /// The page for `view`, with the current request's id. A template that
    /// fails here (it rendered at load, so only on values the sample did not
    /// have) is logged and the built-in one is used.
    pub fn render<V: View>(&self, view: &V) -> String {
        let ctx = context! {
            request_id => RequestId::current().map(|id| id.to_string()),
            ..Value::from_serialize(view)
        };
        let rendered = self
            .env
            .get_template(V::TEMPLATE)
            .and_then(|t| t.render(ctx.clone()));
        match rendered {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(template = V::TEMPLATE, error = %template_error(V::TEMPLATE, &e), "page template failed; using the built-in page");
                builtin_env()
                    .get_template(V::TEMPLATE)
                    .and_then(|t| t.render(ctx))
                    .unwrap_or_else(|_| {
                        String::from(
                            "<!DOCTYPE html><title>Error</title><p>This page cannot be shown.</p>",
                        )
                    })
            }
        }
    }
}

/// Escapes text for HTML element content and quoted attributes.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn template_error(file: &str, e: &minijinja::Error) -> PagesError {
    template_error_in(None, file, e)
}

/// Like [`template_error`], quoting the failing line from `env` when it has it.
fn template_error_in(
    env: Option<&Environment<'static>>,
    file: &str,
    e: &minijinja::Error,
) -> PagesError {
    // An error inside an included or extended template is wrapped: report
    // the innermost one, which names the file and line that failed.
    let mut e = e;
    while let Some(inner) =
        std::error::Error::source(e).and_then(|s| s.downcast_ref::<minijinja::Error>())
    {
        e = inner;
    }
    let mut detail = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    if let (Some(name), Some(line)) = (e.name(), e.line()) {
        let quoted = env
            .and_then(|env| env.get_template(name).ok())
            .and_then(|t| {
                t.source()
                    .lines()
                    .nth(line.saturating_sub(1))
                    .map(str::trim)
                    .map(str::to_owned)
            });
        detail = match quoted {
            Some(text) => format!("{detail} (in {name} line {line}: {text})"),
            None => format!("{detail} (in {name} line {line})"),
        };
    }
    PagesError::Template {
        file: file.to_owned(),
        detail,
    }
}

/// The pages in use, shared by the gateway and the provider and replaced
/// whole when the templates folder changes.
#[derive(Debug, Clone)]
pub struct PagesHandle(Arc<ArcSwap<Pages>>);

impl Default for PagesHandle {
    fn default() -> Self {
        Self::new(Pages::builtin())
    }
}

impl PagesHandle {
    /// A handle serving `pages`.
    pub fn new(pages: Pages) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(pages)))
    }

    /// The pages now.
    pub fn get(&self) -> arc_swap::Guard<Arc<Pages>> {
        self.0.load()
    }

    /// Serves `pages` from now on.
    pub fn set(&self, pages: Pages) {
        self.0.store(Arc::new(pages));
    }

    /// Renders `view` with the pages now.
    pub fn render<V: View>(&self, view: &V) -> String {
        self.get().render(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    fn forbidden<'a>(user: Option<&'a str>) -> ForbiddenView<'a> {
        ForbiddenView {
            user,
            ..ForbiddenView::sample()
        }
    }

    #[test]
    fn every_built_in_page_renders_and_escapes_what_it_is_given() {
        let pages = Pages::from_dir(folder(&[]).path()).expect("built-ins load");
        assert!(pages.overridden().is_empty());
        let html = pages.render(&LoginView {
            username: "\"><script>alert(1)</script>",
            ..LoginView::sample()
        });
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("autocomplete=\"current-password\""));
        assert!(html.contains("action=\"/idp/login\""), "{html}");
        let html = pages.render(&forbidden(Some("<b>mallory</b>")));
        assert!(html.contains("&lt;b&gt;mallory&lt;/b&gt;"), "{html}");
        assert!(html.contains("Sign in as someone else"));
        assert!(
            pages
                .render(&ErrorView::sample())
                .contains("invalid_request")
        );
        assert!(
            pages
                .render(&ConfirmView::sample())
                .contains("name=\"token\"")
        );
        assert!(
            pages
                .render(&SignedOutView::sample())
                .contains("Signed out")
        );
    }

    #[tokio::test]
    async fn pages_show_the_current_request_id() {
        let id = RequestId::generate();
        let html = id
            .clone()
            .scope(async { Pages::builtin().render(&ErrorView::sample()) })
            .await;
        assert!(html.contains(id.as_str()), "{html}");
        assert!(
            !Pages::builtin()
                .render(&ErrorView::sample())
                .contains("Request ID")
        );
    }

    #[test]
    fn a_folder_overrides_file_by_file_and_skips_dotfiles() {
        let dir = folder(&[
            ("style.css", "body{background:#123456}"),
            (
                "forbidden.html",
                "{% extends \"base.html\" %}{% block content %}<p>Nope, {{ user }}.</p>{% endblock %}",
            ),
            (".hidden", "{{ broken"),
        ]);
        std::fs::create_dir(dir.path().join("..2026_12_01")).expect("mkdir");
        let pages = Pages::from_dir(dir.path()).expect("loads");
        assert_eq!(pages.overridden(), ["forbidden.html", "style.css"]);
        let html = pages.render(&forbidden(Some("alice")));
        assert!(
            html.contains("<p>Nope, alice.</p>") && html.contains("#123456"),
            "{html}"
        );
        // The login page keeps the built-in markup, with the new style.
        let login = pages.render(&LoginView::sample());
        assert!(login.contains("name=\"password\"") && login.contains("#123456"));
    }

    #[test]
    fn broken_or_unknown_files_are_refused_with_the_file_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("login.html", "<p>\n{% if %}</p>", "login.html"),
            ("error.html", "<p>{{ mesage }}</p>", "mesage"),
            ("logn.html", "<p></p>", "not a template this version knows"),
        ];
        for (file, text, needle) in cases {
            let err = Pages::from_dir(folder(&[(file, text)]).path())
                .expect_err(file)
                .to_string();
            assert!(
                err.contains(needle) && err.starts_with(file),
                "{file}: {err}"
            );
        }
        let err = Pages::from_dir(folder(&[("login.html", "<p>\n{% if %}</p>")]).path())
            .expect_err("syntax")
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        // A misspelt value in a branch the full sample does not take.
        let else_branch =
            "{% if continue_url %}{{ continue_url }}{% else %}{{ mesage }}{% endif %}";
        let err = Pages::from_dir(folder(&[("signed_out.html", else_branch)]).path())
            .expect_err("else branch")
            .to_string();
        assert!(err.contains("mesage"), "{err}");
        // An error in an included file names that file and its line.
        let err = Pages::from_dir(folder(&[("style.css", "a{}\n{{ nope }}")]).path())
            .expect_err("style")
            .to_string();
        assert!(err.contains("in style.css line 2: {{ nope }}"), "{err}");
        let missing = Pages::from_dir(Path::new("/nonexistent/templates")).expect_err("missing");
        assert!(matches!(missing, PagesError::Read { .. }));
    }

    #[test]
    fn values_in_the_inlined_style_are_escaped_too() {
        let dir = folder(&[(
            "style.css",
            "/* {% if username is defined %}{{ username }}{% endif %} */",
        )]);
        let html = Pages::from_dir(dir.path())
            .expect("loads")
            .render(&LoginView {
                username: "</style><meta http-equiv=refresh content=0;url=https://evil.example>",
                ..LoginView::sample()
            });
        assert!(!html.contains("</style><meta"), "{html}");
    }

    #[test]
    fn the_handle_serves_the_pages_last_set() {
        let handle = PagesHandle::default();
        assert!(!handle.render(&SignedOutView::sample()).contains("Bye"));
        let dir = folder(&[("signed_out.html", "<p>Bye. {{ message }}</p>")]);
        handle.set(Pages::from_dir(dir.path()).expect("loads"));
        assert!(handle.render(&SignedOutView::sample()).contains("Bye."));
    }
}
