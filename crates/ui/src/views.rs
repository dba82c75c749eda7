//! What each page shows: one struct per template, serialised into its context.
//! Every page also gets `request_id` (the id of the request being served).

use serde::Serialize;

/// A page's values; [`View::TEMPLATE`] names the file that renders it.
pub trait View: Serialize {
    /// The template file.
    const TEMPLATE: &'static str;
    /// Values to render the template with when it is checked at load.
    fn sample() -> Self;
    /// The same with every optional value absent.
    fn sparse() -> Self;
}

/// The provider's login form.
#[derive(Debug, Serialize)]
pub struct LoginView<'a> {
    /// The page's title.
    pub title: &'a str,
    /// Where the form posts to.
    pub action: &'a str,
    /// The pending authorization request it completes (hidden field `tx`).
    pub transaction: &'a str,
    /// The CSRF token (hidden field `csrf`, also in a cookie).
    pub csrf: &'a str,
    /// The user name to pre-fill: the `login_hint` or the last attempt.
    pub username: &'a str,
    /// The name of the application the user signs in to.
    pub client_name: &'a str,
    /// A message above the form (wrong password, throttled).
    pub message: Option<&'a str>,
    /// Identity providers to sign in with instead (one button each).
    pub providers: &'a [SignInOption<'a>],
    /// The user name and password form is shown (there are local users).
    pub password_form: bool,
}

/// One identity provider on the sign-in page.
#[derive(Debug, Clone, Serialize)]
pub struct SignInOption<'a> {
    /// What the button says after "Sign in with".
    pub label: &'a str,
    /// Where it goes (the provider's start of the login there).
    pub url: &'a str,
}

const SAMPLE_PROVIDERS: &[SignInOption<'static>] = &[SignInOption {
    label: "Corp",
    url: "/idp/upstreams/corp/start?tx=tx",
}];

impl View for LoginView<'_> {
    const TEMPLATE: &'static str = "login.html";
    fn sample() -> Self {
        Self {
            title: "Sign in",
            action: "/idp/login",
            transaction: "tx",
            csrf: "csrf",
            username: "alice",
            client_name: "Demo",
            message: Some("The user name or password is not right."),
            providers: SAMPLE_PROVIDERS,
            password_form: true,
        }
    }

    fn sparse() -> Self {
        Self {
            message: None,
            username: "",
            providers: &[],
            ..Self::sample()
        }
    }
}

/// An error: what happened and what to do about it.
#[derive(Debug, Serialize)]
pub struct ErrorView<'a> {
    /// The HTTP status code.
    pub status: u16,
    /// A short title ("Sign-in error").
    pub title: &'a str,
    /// What happened, in a sentence.
    pub message: &'a str,
    /// What to do about it, when there is something to do.
    pub hint: Option<&'a str>,
    /// A machine-readable code (an OAuth error code), when there is one.
    pub code: Option<&'a str>,
    /// A link that starts over, when one is known.
    pub retry_url: Option<&'a str>,
}

impl View for ErrorView<'_> {
    const TEMPLATE: &'static str = "error.html";
    fn sample() -> Self {
        Self {
            status: 400,
            title: "Sign-in error",
            message: "The sign-in could not be completed.",
            hint: Some("Start again from the application."),
            code: Some("invalid_request"),
            retry_url: Some("/"),
        }
    }

    fn sparse() -> Self {
        Self {
            hint: None,
            code: None,
            retry_url: None,
            ..Self::sample()
        }
    }
}

/// "Access denied": who is signed in, and the ways out.
#[derive(Debug, Serialize)]
pub struct ForbiddenView<'a> {
    /// The title ("Access denied").
    pub title: &'a str,
    /// The application that refused.
    pub app: &'a str,
    /// Who is signed in (email, name or subject), when known.
    pub user: Option<&'a str>,
    /// Where "sign in as someone else" goes: a fresh login that makes the
    /// IdP ask for credentials again.
    pub switch_url: Option<&'a str>,
    /// Where the "sign out" form posts.
    pub sign_out_action: Option<&'a str>,
    /// The sign-out form's token.
    pub sign_out_token: Option<&'a str>,
}

impl View for ForbiddenView<'_> {
    const TEMPLATE: &'static str = "forbidden.html";
    fn sample() -> Self {
        Self {
            title: "Access denied",
            app: "demo",
            user: Some("alice@example.com"),
            switch_url: Some("/.orchestrator/login?rd=%2F&prompt=login"),
            sign_out_action: Some("/.orchestrator/logout"),
            sign_out_token: Some("token"),
        }
    }

    fn sparse() -> Self {
        Self {
            user: None,
            switch_url: None,
            sign_out_action: None,
            sign_out_token: None,
            ..Self::sample()
        }
    }
}

/// A question with one button that POSTs a token (sign-out confirmation).
#[derive(Debug, Serialize)]
pub struct ConfirmView<'a> {
    /// The title.
    pub title: &'a str,
    /// The question.
    pub message: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The form's token.
    pub token: &'a str,
    /// The button's label.
    pub button: &'a str,
}

impl View for ConfirmView<'_> {
    const TEMPLATE: &'static str = "confirm.html";
    fn sample() -> Self {
        Self {
            title: "Sign out",
            message: "Do you want to sign out?",
            action: "/.orchestrator/logout",
            token: "token",
            button: "Sign out",
        }
    }

    fn sparse() -> Self {
        Self::sample()
    }
}

/// After sign-out.
#[derive(Debug, Serialize)]
pub struct SignedOutView<'a> {
    /// The title.
    pub title: &'a str,
    /// What happened.
    pub message: &'a str,
    /// A link to sign in again, when there is a place to go.
    pub continue_url: Option<&'a str>,
}

impl View for SignedOutView<'_> {
    const TEMPLATE: &'static str = "signed_out.html";
    fn sample() -> Self {
        Self {
            title: "Signed out",
            message: "You have been signed out.",
            continue_url: Some("/"),
        }
    }

    fn sparse() -> Self {
        Self {
            continue_url: None,
            ..Self::sample()
        }
    }
}
