//! `${secret:NAME}` and `${env:NAME}` references inside string values.
//!
//! A secret is the content of file NAME in `secretsDir` (one trailing newline
//! trimmed, as `kubectl create secret --from-file` leaves it). NAME must be a
//! plain file name, so a config can never read outside the Secret mount.
//! `$${` stands for a literal `${`.

use std::path::Path;

use serde_json::Value;

use crate::error::ConfigError;
use crate::sources::Sources;

/// What resolution produced besides the rewritten tree.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    /// Problems, each at its key path.
    pub(crate) errors: Vec<ConfigError>,
    /// Every secret value read, so error messages can be scrubbed of them.
    pub(crate) secret_values: Vec<String>,
}

/// Replaces every reference in every string of `tree`, in place.
pub(crate) fn resolve_tree(
    tree: &mut Value,
    secrets_dir: &Path,
    sources: &dyn Sources,
) -> Resolved {
    let mut out = Resolved::default();
    walk(tree, &mut String::new(), secrets_dir, sources, &mut out);
    out
}

fn walk(
    value: &mut Value,
    path: &mut String,
    secrets_dir: &Path,
    sources: &dyn Sources,
    out: &mut Resolved,
) {
    match value {
        Value::String(s) if s.contains("${") => {
            match resolve_str(s, secrets_dir, sources, &mut out.secret_values) {
                Ok(new) => *s = new,
                Err(message) => out.errors.push(ConfigError::new(path.clone(), message)),
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, secrets_dir, sources, out);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(item, path, secrets_dir, sources, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Resolves the references of one string; the error is the reason, without any value.
pub(crate) fn resolve_str(
    input: &str,
    secrets_dir: &Path,
    sources: &dyn Sources,
    secret_values: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err("unterminated reference: \"${\" without a closing \"}\"".to_owned());
        };
        let reference = &body_start[..end];
        rest = &body_start[end + 1..];
        let (kind, name) = reference.split_once(':').ok_or_else(|| {
            format!("reference \"${{{reference}}}\" must be ${{secret:NAME}} or ${{env:NAME}}")
        })?;
        match kind {
            "secret" => {
                check_secret_name(name)?;
                let file = secrets_dir.join(name);
                let content = sources.read_file(&file).map_err(|e| {
                    format!(
                        "secret \"{name}\" cannot be read from {}: {}",
                        secrets_dir.display(),
                        io_reason(&e)
                    )
                })?;
                let content = trim_one_newline(&content).to_owned();
                if !content.is_empty() {
                    secret_values.push(content.clone());
                }
                out.push_str(&content);
            }
            "env" => {
                check_env_name(name)?;
                let value = sources
                    .env_var(name)
                    .ok_or_else(|| format!("environment variable \"{name}\" is not set"))?;
                // `${env:…}` carries secrets too (a password from a Kubernetes
                // secretKeyRef): scrub it from errors like a secret file.
                if !value.is_empty() {
                    secret_values.push(value.clone());
                }
                out.push_str(&value);
            }
            other => {
                return Err(format!(
                    "unknown reference kind \"{other}\": use ${{secret:NAME}} or ${{env:NAME}}"
                ));
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.kind().to_string(),
    }
}

fn trim_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// A secret name is one plain file name inside `secretsDir`.
fn check_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("secret name is empty: write ${secret:NAME}".to_owned());
    }
    if name == "." || name == ".." || name.starts_with("..") {
        return Err(format!(
            "secret name \"{name}\" is not a plain file name in secretsDir"
        ));
    }
    if name.contains(['/', '\\', '\0']) {
        return Err(format!(
            "secret name \"{name}\" must be a plain file name in secretsDir, without a path"
        ));
    }
    Ok(())
}

fn check_env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "environment variable name \"{name}\" is not valid (letters, digits and _)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::MapSources;

    fn sources() -> MapSources {
        MapSources::default()
            .file("/s/key.pem", "PEMDATA\n")
            .file("/s/pw", "p@ss\r\n")
            .env("REDIS_HOST", "redis.internal")
    }

    fn resolve(s: &str) -> Result<String, String> {
        resolve_str(s, Path::new("/s"), &sources(), &mut Vec::new())
    }

    #[test]
    fn whole_and_embedded_references() {
        assert_eq!(resolve("${secret:key.pem}").unwrap(), "PEMDATA");
        assert_eq!(
            resolve("redis://:${secret:pw}@${env:REDIS_HOST}:6379").unwrap(),
            "redis://:p@ss@redis.internal:6379"
        );
        assert_eq!(
            resolve("cost $5 and $${literal}").unwrap(),
            "cost $5 and ${literal}"
        );
    }

    #[test]
    fn secret_values_are_collected_for_scrubbing() {
        let mut seen = Vec::new();
        resolve_str("${secret:pw}", Path::new("/s"), &sources(), &mut seen).unwrap();
        assert_eq!(seen, vec!["p@ss".to_owned()]);
        // Found by fuzz/config_load: an env value echoed by a type error.
        let mut seen = Vec::new();
        resolve_str("${env:REDIS_HOST}", Path::new("/s"), &sources(), &mut seen).unwrap();
        assert_eq!(seen, vec!["redis.internal".to_owned()]);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "${secret:../x}",
            "${secret:/etc/passwd}",
            "${secret:}",
            "${secret:a/b}",
            "${secret:..}",
        ] {
            let err = resolve(bad).unwrap_err();
            assert!(
                err.contains("secret name"),
                "{bad} gave unexpected error {err}"
            );
        }
        assert!(resolve("${env:A-B}").unwrap_err().contains("not valid"));
        assert!(
            resolve("${vault:x}")
                .unwrap_err()
                .contains("unknown reference kind")
        );
        assert!(resolve("${secret:x").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn missing_secret_names_the_secret_not_a_value() {
        let err = resolve("${secret:nope}").unwrap_err();
        assert!(err.contains("\"nope\""), "{err}");
        assert!(err.contains("no such file"), "{err}");
        let err = resolve("${env:UNSET_VAR}").unwrap_err();
        assert!(err.contains("UNSET_VAR"), "{err}");
    }

    #[test]
    fn tree_errors_carry_key_paths() {
        let mut tree = serde_json::json!({
            "a": {"b": ["ok", "${secret:missing}"]},
            "c": "${secret:pw}"
        });
        let out = resolve_tree(&mut tree, Path::new("/s"), &sources());
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].path, "a.b[1]");
        assert_eq!(tree["c"], "p@ss");
    }
}
