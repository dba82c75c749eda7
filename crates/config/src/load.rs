//! Loading: file + environment overrides → references resolved → typed
//! structs → validated [`Config`], with every problem reported at once.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ConfigError, ConfigErrors};
use crate::model::Config;
use crate::resolve::{resolve_str, resolve_tree};
use crate::sources::Sources;
use crate::validate::validate;

/// Where the chart mounts the ConfigMap; the default of `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/orchestrator/orchestrator.yaml";

/// Prefix of environment overrides: `ORCHESTRATOR__LISTEN__ADDRESS=0.0.0.0:8080`.
pub const ENV_PREFIX: &str = "ORCHESTRATOR";

/// Top-level keys, in the order of the reference config.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "admin",
    "secretsDir",
    "log",
    "shutdown",
    "cache",
    "oidcProvider",
    "appGateway",
    "ui",
    "traces",
];

/// Env override keys that hold lists (comma-separated in the variable).
const LIST_KEYS: &[&str] = &["listen.trustedProxies", "cache.redis.clusterUrls"];

/// Loads, resolves and validates the config file at `path`.
pub fn load(path: &Path, sources: &dyn Sources) -> Result<Config, ConfigErrors> {
    let text = sources.read_file(path).map_err(|e| {
        ConfigErrors::one(
            "",
            format!("config file {}: cannot be read: {}", path.display(), e),
        )
    })?;
    load_str(&text, &path.display().to_string(), sources)
}

/// Loads from YAML text; `origin` names it in errors.
pub fn load_str(text: &str, origin: &str, sources: &dyn Sources) -> Result<Config, ConfigErrors> {
    let mut tree = merge_sources(text, origin, sources)?;
    let Value::Object(root) = &mut tree else {
        return Err(ConfigErrors::one(
            "",
            format!("config file {origin}: the top level must be a mapping of keys"),
        ));
    };

    let mut errors = Vec::new();
    let secrets_dir = secrets_dir(root, sources, &mut errors);
    let resolved = resolve_tree(&mut tree, &secrets_dir, sources);
    errors.extend(resolved.errors);

    let (config, failed_sections) = deserialize_sections(tree, &mut errors);
    // Semantic checks run even when some sections failed to parse (those are
    // defaulted), so one run reports every problem; the defaults' findings are dropped.
    errors.extend(validate(&config).into_iter().filter(|e| {
        !failed_sections
            .iter()
            .any(|s| e.path == *s || e.path.starts_with(&format!("{s}.")))
    }));

    if errors.is_empty() {
        Ok(config)
    } else {
        for e in &mut errors {
            scrub(&mut e.message, &resolved.secret_values);
        }
        Err(ConfigErrors(errors))
    }
}

/// The YAML file layered with `ORCHESTRATOR__…` variables, through the `config` crate.
fn merge_sources(text: &str, origin: &str, sources: &dyn Sources) -> Result<Value, ConfigErrors> {
    let env: config::Map<String, String> = sources
        .env_vars()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    let mut environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .convert_case(config::Case::Camel)
        .try_parsing(true)
        .list_separator(",")
        .source(Some(env));
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .add_source(environment)
        .build()
        .map_err(|e| ConfigErrors::one("", format!("config file {origin}: {e}")))?;
    built
        .try_deserialize::<Value>()
        .map_err(|e| ConfigErrors::one("", format!("config file {origin}: {e}")))
}

/// `secretsDir` is needed before the other references, so it is resolved first (env only).
fn secrets_dir(
    root: &Map<String, Value>,
    sources: &dyn Sources,
    errors: &mut Vec<ConfigError>,
) -> PathBuf {
    match root.get("secretsDir") {
        Some(Value::String(s)) => match resolve_str(s, Path::new(""), sources, &mut Vec::new()) {
            Ok(dir) => PathBuf::from(dir),
            Err(reason) => {
                errors.push(ConfigError::new("secretsDir", reason));
                PathBuf::new()
            }
        },
        _ => PathBuf::from("/etc/orchestrator/secrets"),
    }
}

/// Deserialises each top-level section on its own, so one bad section does not hide
/// the problems of the others. Sections that fail are defaulted and named in the
/// second value.
fn deserialize_sections(tree: Value, errors: &mut Vec<ConfigError>) -> (Config, Vec<String>) {
    let mut failed = Vec::new();
    let Value::Object(mut root) = tree else {
        return (Config::default(), failed);
    };
    for key in root.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            errors.push(unknown_key(key, key, TOP_LEVEL_KEYS));
        }
    }
    let mut sections = Map::new();
    for key in TOP_LEVEL_KEYS {
        if let Some(value) = root.remove(*key) {
            // A section left empty in YAML (`oidcProvider:`) means "not configured".
            if value.is_null() {
                continue;
            }
            if check_section(key, &value, errors) {
                sections.insert((*key).to_owned(), value);
            } else {
                failed.push((*key).to_owned());
            }
        }
    }
    match deserialize_at::<Config>("", Value::Object(sections)) {
        Ok(config) => (config, failed),
        Err(e) => {
            errors.push(e);
            (Config::default(), failed)
        }
    }
}

/// Deserialises one section to find its problems; true when it is fine.
fn check_section(key: &str, value: &Value, errors: &mut Vec<ConfigError>) -> bool {
    let mut single = Map::new();
    single.insert(key.to_owned(), value.clone());
    match deserialize_at::<Config>("", Value::Object(single)) {
        Ok(_) => true,
        Err(e) => {
            errors.push(e);
            false
        }
    }
}

fn deserialize_at<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = join_path(prefix, &e.path().to_string());
        describe(path, &e.inner().to_string())
    })
}

fn join_path(prefix: &str, path: &str) -> String {
    let path = if path == "." { "" } else { path };
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Turns serde's wording into a message for someone editing YAML.
fn describe(path: String, message: &str) -> ConfigError {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest.split('`').skip(1).skip(1).step_by(2).collect();
        let path = if path.ends_with(field) {
            path
        } else {
            join_path(&path, field)
        };
        return unknown_key(&path, field, &expected);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return ConfigError::new(join_path(&path, field), "required key is missing");
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let variant = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest.split('`').skip(1).skip(1).step_by(2).collect();
        return ConfigError::new(
            path,
            format!("\"{variant}\" is not one of {}", quoted_list(&expected)),
        );
    }
    ConfigError::new(path, message.to_owned())
}

fn unknown_key(path: &str, key: &str, known: &[&str]) -> ConfigError {
    let message = match nearest(key, known) {
        Some(best) => format!("unknown key \"{key}\"; did you mean \"{best}\"?"),
        None => format!("unknown key \"{key}\"; known keys: {}", quoted_list(known)),
    };
    ConfigError::new(path, message)
}

/// The known key closest to `key`, when it is close enough to be a typo.
fn nearest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&lower, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes any secret value that a parser echoed back into a message.
fn scrub(message: &mut String, secrets: &[String]) {
    for secret in secrets {
        if secret.len() >= 3 && message.contains(secret.as_str()) {
            *message = message.replace(secret.as_str(), "[redacted]");
        }
    }
}
