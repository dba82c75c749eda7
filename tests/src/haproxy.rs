//! HAProxy as the ingress in front of several orchestrator replicas: sticky
//! sessions by an inserted cookie (as an ALB or NGINX ingress pins a client),
//! health checks on each replica's admin `/readyz`, and redispatch when the
//! pinned replica is down. Runs in the foreground as a child, killed on drop.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::free_port;

/// One backend: main port and admin port of a replica.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// The replica's main listener port.
    pub port: u16,
    /// The replica's admin port (health checks).
    pub admin_port: u16,
}

/// A running HAProxy.
pub struct Haproxy {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    stats_port: u16,
}

impl Haproxy {
    /// Starts HAProxy on a free loopback port in front of `backends`
    /// (named `r0`, `r1`, …; a backend need not be running yet), and waits
    /// until the frontend accepts connections.
    pub async fn start(backends: &[Backend]) -> Self {
        let which = std::process::Command::new("haproxy").arg("-v").output();
        assert!(
            which.is_ok_and(|o| o.status.success()),
            "haproxy not found: apt-get install -y haproxy (scripts/test.sh does)"
        );
        let port = free_port();
        let stats_port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut servers = String::new();
        for (i, b) in backends.iter().enumerate() {
            servers.push_str(&format!(
                "  server r{i} 127.0.0.1:{} check port {} cookie r{i}\n",
                b.port, b.admin_port
            ));
        }
        let cfg = format!(
            "global\n  maxconn 2000\n\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 20s\n  timeout server 20s\n  \
             timeout check 1s\n  option redispatch\n  retries 3\n  retry-on all-retryable-errors\n  \
             option http-server-close\n  http-reuse never\n\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\n\
             backend be\n  balance roundrobin\n  cookie SERVERID insert indirect nocache\n  \
             option httpchk GET /readyz\n  http-check expect status 200\n  \
             default-server inter 200ms fall 2 rise 2\n{servers}\n\
             listen stats\n  bind 127.0.0.1:{stats_port}\n  stats enable\n  stats uri /stats\n"
        );
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).expect("write haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("haproxy.log")).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("haproxy.err")).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn haproxy");
        let mut me = Self {
            child,
            dir,
            port,
            stats_port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", stats_port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("haproxy exited with {status}: {}", me.logs());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy not listening: {}",
                me.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        me
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The frontend port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What HAProxy logged.
    pub fn logs(&self) -> String {
        let out = std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("haproxy.err")).unwrap_or_default();
        format!("{out}\n{err}")
    }

    /// The status (`UP`, `DOWN`, `UP 1/2`, …) of each server, by name.
    pub async fn server_states(&self) -> Vec<(String, String)> {
        self.server_column(17).await
    }

    /// How many requests (sessions) HAProxy sent to server `name` so far.
    pub async fn served(&self, name: &str) -> u64 {
        self.server_column(7)
            .await
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }

    /// One column of the stats CSV for every server of the backend.
    async fn server_column(&self, col: usize) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}/stats;csv", self.stats_port);
        let Ok(resp) = reqwest::get(url).await else {
            return Vec::new();
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("be,r"))
            .filter_map(|l| {
                let cols: Vec<&str> = l.split(',').collect();
                Some((cols.get(1)?.to_string(), cols.get(col)?.to_string()))
            })
            .collect()
    }

    /// Polls (bounded) until server `name` is in state `want` (`UP` or `DOWN`).
    pub async fn wait_state(&self, name: &str, want: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let states = self.server_states().await;
            if states.iter().any(|(n, s)| n == name && s == want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not {want} within {limit:?}: {states:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
