//! A real browser for end-to-end tests: Debian's headless Chromium, driven
//! through WebDriver (`chromedriver` + fantoccini). Each [`Chromium`] is a
//! fresh profile in a temp dir and its own chromedriver on a free port, both
//! gone on drop. Where the simulated [`crate::browser::Browser`] follows
//! redirects by hand, this one enforces what real browsers enforce: CSP
//! (`form-action` on a form's redirects), cookie prefixes and SameSite.
//!
//! [`Chromium::start`] returns `None` when `/usr/bin/chromium` or
//! `chromedriver` is missing, so a developer without them gets a skipped test
//! with a message; `scripts/test.sh` installs both, and sets
//! `ORCHESTRATOR_REQUIRE_BROWSER=1` so that CI fails instead of skipping.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long one navigation or wait may take.
const STEP: Duration = Duration::from_secs(15);

/// One headless Chromium with a fresh profile.
pub struct Chromium {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    name: String,
}

impl Chromium {
    /// Starts chromedriver and a headless Chromium for the test `name` (used
    /// for the screenshot file), with `extra_args` after the standard flags
    /// (e.g. `--ignore-certificate-errors-spki-list=…` to trust one test
    /// certificate).
    ///
    /// `None` when the browser is not installed and
    /// `ORCHESTRATOR_REQUIRE_BROWSER` is not set.
    pub async fn start(name: &str, extra_args: &[String]) -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var_os("ORCHESTRATOR_REQUIRE_BROWSER").is_none(),
                "{CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipping {name}: {CHROMIUM} or {CHROMEDRIVER} is not installed");
            return None;
        }
        let port = crate::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra_args.iter().cloned());
        let caps = serde_json::json!({
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            // What the page printed to its console (CSP violations, errors).
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver needs a moment to listen: retry the session (bounded).
        let deadline = Instant::now() + STEP;
        let client = loop {
            // chromedriver speaks plain HTTP on loopback: no TLS connector.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("no WebDriver session with chromedriver: {e}"),
            }
        };
        Some(Self {
            client,
            driver,
            _profile: profile,
            name: name.to_owned(),
        })
    }

    /// The WebDriver client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            self.fail(&format!("navigating to {url}: {e}")).await;
        }
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Types `value` into the input named `name`.
    pub async fn fill(&self, name: &str, value: &str) {
        let field = match self
            .client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(&format!("input[name=\"{name}\"]")))
            .await
        {
            Ok(f) => f,
            Err(e) => self.fail(&format!("no input {name}: {e}")).await,
        };
        if let Err(e) = field.send_keys(value).await {
            self.fail(&format!("typing into {name}: {e}")).await;
        }
    }

    /// Clicks the form's submit button.
    pub async fn submit(&self) {
        let button = match self
            .client
            .find(Locator::Css(
                "button[type=\"submit\"], input[type=\"submit\"], button",
            ))
            .await
        {
            Ok(b) => b,
            Err(e) => self.fail(&format!("no submit button: {e}")).await,
        };
        if let Err(e) = button.click().await {
            self.fail(&format!("clicking submit: {e}")).await;
        }
    }

    /// Waits (bounded) until the current URL starts with `prefix`; fails the
    /// test with a screenshot otherwise.
    pub async fn wait_for_url(&self, prefix: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let url = self.url().await;
            if url.starts_with(prefix) {
                return;
            }
            if Instant::now() >= deadline {
                let text = self.text().await;
                self.fail(&format!("still at {url}, want {prefix}…; page: {text}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot and panics with `why` and its path.
    pub async fn fail(&self, why: &str) -> ! {
        let path = self.screenshot().await;
        panic!("{}: {why}\nscreenshot: {}", self.name, path.display());
    }

    /// Saves a PNG of the page under `target/browser-screenshots/` (named
    /// after the test) and returns its path.
    pub async fn screenshot(&self) -> PathBuf {
        self.screenshot_as(&self.name).await
    }

    /// Saves a PNG of the page as `target/browser-screenshots/{file}.png`,
    /// for people to look at (the pages' looks are not asserted).
    pub async fn screenshot_as(&self, file: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{file}.png"));
        match self.client.screenshot().await {
            Ok(png) => {
                let _ = std::fs::write(&path, png);
            }
            Err(e) => eprintln!("no screenshot: {e}"),
        }
        path
    }

    /// The text of the first element matching `css`, or the test fails.
    pub async fn element_text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(e) => self.fail(&format!("no element {css}: {e}")).await,
        }
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        let element = match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => self.fail(&format!("no element {css}: {e}")).await,
        };
        if let Err(e) = element.click().await {
            self.fail(&format!("clicking {css}: {e}")).await;
        }
    }

    /// What the pages printed to the console since the last call, at
    /// warning level or above (CSP violations are errors there). A page's own
    /// 4xx status, which Chromium also reports, is not a problem of the page.
    pub async fn console_problems(&self) -> Vec<String> {
        let entries = match self.client.issue_cmd(BrowserLog).await {
            Ok(serde_json::Value::Array(entries)) => entries,
            Ok(other) => self.fail(&format!("browser log: {other}")).await,
            Err(e) => self.fail(&format!("browser log: {e}")).await,
        };
        let page = self.url().await;
        entries
            .iter()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
            .filter_map(|e| e["message"].as_str())
            .filter(|m| {
                !(m.starts_with(&page)
                    && m.contains(
                        "Failed to load resource: the server responded with a status of 4",
                    ))
            })
            .map(str::to_owned)
            .collect()
    }

    /// Every URL the current page loaded besides itself (images, styles,
    /// scripts, fonts, fetches), from the Resource Timing API.
    pub async fn page_resources(&self) -> Vec<String> {
        let script = "return performance.getEntriesByType('resource').map(e => e.name);";
        match self.client.execute(script, Vec::new()).await {
            Ok(serde_json::Value::Array(urls)) => urls
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect(),
            other => self.fail(&format!("resource timing: {other:?}")).await,
        }
    }

    /// The current page is self-contained and printed no warning or error:
    /// it loaded nothing from anywhere (our pages inline their style) and
    /// the console is clean.
    pub async fn expect_clean_page(&self) {
        let resources = self.page_resources().await;
        if !resources.is_empty() {
            self.fail(&format!("the page loaded {resources:?}")).await;
        }
        let problems = self.console_problems().await;
        if !problems.is_empty() {
            self.fail(&format!("console: {problems:#?}")).await;
        }
    }

    /// Ends the WebDriver session (the browser exits) and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

/// chromedriver's log endpoint (not in the W3C protocol): the entries of the
/// `browser` log (the console) since the last read.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
