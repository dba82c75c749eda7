//! The one-shot subcommands: validate, hash-password, keys generate, probe.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use orchestrator_cache::{Cache, MemoryCache};
use orchestrator_config::SystemSources;

use crate::app::{Parts, Runtime};

/// `orchestrator validate`: the config, and everything built from it, without binding.
pub(crate) fn validate(path: &Path) -> ExitCode {
    let config = match orchestrator_config::load(path, &SystemSources) {
        Ok(c) => c,
        Err(errors) => return report(errors.iter().map(ToString::to_string)),
    };
    let mut problems = Vec::new();
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        problems.push(format!("log.level: {e}"));
    }
    if let Some(ca) = &config.cache.redis.ca_file {
        if let Err(e) = std::fs::read(ca) {
            problems.push(format!("cache.redis.caFile: {}: {e}", ca.display()));
        }
    }
    if let Some(tls) = &config.listen.tls {
        if let Err(e) = crate::tls::load(tls) {
            problems.push(e);
        }
    }
    // Building needs a cache; a memory one checks the same things without connecting.
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(&config.cache.memory));
    match Parts::new(cache, &prometheus::Registry::new()) {
        Ok(parts) => {
            if let Err(errors) = Runtime::build(config, &parts, None) {
                problems.extend(errors);
            }
        }
        Err(e) => problems.push(e),
    }
    if problems.is_empty() {
        println!("config OK");
        ExitCode::SUCCESS
    } else {
        report(problems.into_iter())
    }
}

/// Prints one line per problem on stderr and fails.
pub(crate) fn report(problems: impl Iterator<Item = String>) -> ExitCode {
    for p in problems {
        eprintln!("error: {p}");
    }
    ExitCode::FAILURE
}

/// `orchestrator hash-password`: password on stdin (one trailing newline trimmed).
pub(crate) fn hash_password() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        return report(std::iter::once(format!("cannot read stdin: {e}")));
    }
    let password = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(&input);
    if password.is_empty() {
        return report(std::iter::once("empty password on stdin".to_owned()));
    }
    let salt = SaltString::generate(&mut OsRng);
    match argon2::Argon2::default().hash_password(password.as_bytes(), &salt) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => report(std::iter::once(format!("hashing failed: {e}"))),
    }
}

/// `orchestrator probe --url`: a tiny HTTP GET for distroless images without curl.
pub(crate) async fn probe(url: &str, timeout: Duration) -> ExitCode {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return report(std::iter::once(format!("--url {url}: {e}"))),
    };
    if uri.scheme_str() != Some("http") {
        return report(std::iter::once(format!(
            "--url {url}: only http:// is supported"
        )));
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let req = match http::Request::get(uri).body(Empty::new()) {
        Ok(r) => r,
        Err(e) => return report(std::iter::once(format!("--url {url}: {e}"))),
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            println!(
                "{} {}",
                status.as_u16(),
                String::from_utf8_lossy(&body).trim()
            );
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(Err(e)) => report(std::iter::once(format!("{url}: {e}"))),
        Err(_) => report(std::iter::once(format!(
            "{url}: no answer within {timeout:?}"
        ))),
    }
}

/// `orchestrator keys generate`: a new PKCS#8 PEM private key on stdout.
pub(crate) fn keys(command: crate::cli::KeysCommand) -> ExitCode {
    use crate::cli::{Algorithm, KeysCommand};
    use orchestrator_config::SigningAlgorithm;

    let KeysCommand::Generate { algorithm } = command;
    let alg = match algorithm {
        Algorithm::Es256 => SigningAlgorithm::ES256,
        Algorithm::Rs256 => SigningAlgorithm::RS256,
        Algorithm::EdDsa => SigningAlgorithm::EdDSA,
    };
    match orchestrator_oidc::keys::generate_pem(alg) {
        Ok(pem) => {
            print!("{pem}");
            ExitCode::SUCCESS
        }
        Err(e) => report(std::iter::once(format!("key generation failed: {e}"))),
    }
}
