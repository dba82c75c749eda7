//! Real ingress proxies in front of the orchestrator, for forward auth:
//! NGINX (Debian's, configured the way ingress-nginx renders `auth-url`,
//! `auth-signin` and `auth-response-headers`) and Caddy (`forward_auth`).
//! Each runs in the foreground as a child on a loopback port chosen by the
//! test, with its files in a temp dir, and is killed on drop.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A running proxy.
pub struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    name: &'static str,
}

impl Proxy {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the proxy logged.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for f in ["error.log", "stderr.log", "stdout.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(f)) {
                out.push_str(&text);
            }
        }
        out
    }

    async fn spawn(
        name: &'static str,
        mut cmd: Command,
        dir: tempfile::TempDir,
        port: u16,
    ) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start ({e}): scripts/test.sh installs it"));
        let mut me = Self {
            child,
            dir,
            port,
            name,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("{} exited with {status}: {}", me.name, me.logs());
            }
            assert!(
                Instant::now() < deadline,
                "{} not listening: {}",
                me.name,
                me.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        me
    }
}

/// Starts NGINX on `port` with `server` as the body of its one `server {}`
/// block (`listen` is added).
pub async fn nginx(port: u16, server: &str) -> Proxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().display().to_string();
    let conf = format!(
        "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  \
         fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
         server {{\n    listen 127.0.0.1:{port};\n{server}\n  }}\n}}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let mut cmd = Command::new(nginx_binary());
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"]);
    Proxy::spawn("nginx", cmd, dir, port).await
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// Starts Caddy with `site` as the body of the site block for
/// `http://127.0.0.1:<port>` (no admin endpoint, no automatic HTTPS).
pub async fn caddy(port: u16, site: &str) -> Proxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = format!(
        "{{\n  admin off\n  auto_https off\n}}\n\
         http://127.0.0.1:{port} {{\n{site}\n}}\n"
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, file).expect("write Caddyfile");
    let mut cmd = Command::new("caddy");
    cmd.arg("run")
        .arg("--config")
        .arg(&path)
        .args(["--adapter", "caddyfile"])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"));
    Proxy::spawn("caddy", cmd, dir, port).await
}
