//! panva's `oidc-provider` (certified OpenID Provider, Node.js) as a third-party
//! IdP: `tests/fixtures/node-op/op.mjs`, on a loopback address of the test's
//! choosing and a free port. Users alice, bob and carol (see the fixture).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// A running node OP; killed on drop.
pub struct NodeOp {
    /// Its issuer, `http://{host}:{port}`.
    pub issuer: String,
    _child: tokio::process::Child,
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/node-op")
}

impl NodeOp {
    /// Starts the OP on `host` accepting `redirect_uris` (client `gateway`,
    /// secret `gateway-secret`); runs `npm ci` first when the fixture's
    /// modules are missing.
    pub async fn start(host: &str, redirect_uris: &[String]) -> Self {
        Self::start_with(host, redirect_uris, None).await
    }

    /// [`start`](Self::start), with Back-Channel Logout 1.0 to
    /// `backchannel_logout_uri` for client `gateway` when given.
    pub async fn start_with(
        host: &str,
        redirect_uris: &[String],
        backchannel_logout_uri: Option<&str>,
    ) -> Self {
        let dir = fixture_dir();
        if !dir.join("node_modules/oidc-provider").exists() {
            let status = tokio::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .await
                .expect("npm runs");
            assert!(status.success(), "npm ci failed in {}", dir.display());
        }
        let mut child = tokio::process::Command::new("node")
            .arg("op.mjs")
            .arg(redirect_uris.join(","))
            .env("OP_HOST", host)
            .env("OP_BACKCHANNEL_URI", backchannel_logout_uri.unwrap_or(""))
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("node OP did not start in 30 s")
            .expect("node OP's stdout")
            .expect("node OP exited");
        let v: Value = serde_json::from_str(&line).expect("node OP's JSON line");
        // Keep draining stdout: a closed pipe would kill node with EPIPE.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer: v["issuer"].as_str().expect("issuer").to_owned(),
            _child: child,
        }
    }
}
