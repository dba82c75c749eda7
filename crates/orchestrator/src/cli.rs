//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// An identity-aware reverse proxy and OpenID Provider.
#[derive(Debug, Parser)]
#[command(
    name = "orchestrator",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Options of `run`, the default subcommand.
    #[command(flatten)]
    pub(crate) run: ConfigArg,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve (the default).
    Run(ConfigArg),
    /// Check a config file: exit 0 with "config OK", or 1 listing every problem.
    Validate(ConfigArg),
    /// Read a password on stdin, print its argon2id PHC string.
    HashPassword,
    /// Signing-key tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// GET a URL and exit 0 on a 2xx answer (for container probes and `helm test`).
    Probe {
        /// The URL, e.g. http://orchestrator:9090/readyz.
        #[arg(long)]
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout_seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Print a new PKCS#8 PEM private key.
    Generate {
        /// The signature algorithm the key is for.
        #[arg(long, value_enum, default_value_t = Algorithm::Es256)]
        algorithm: Algorithm,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Algorithm {
    /// ECDSA P-256.
    #[value(name = "ES256")]
    Es256,
    /// RSA 2048 (PKCS#1 v1.5 signatures).
    #[value(name = "RS256")]
    Rs256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArg {
    /// The YAML config file.
    #[arg(long, env = "ORCHESTRATOR_CONFIG", default_value = orchestrator_config::DEFAULT_CONFIG_PATH)]
    pub(crate) config: PathBuf,
}
