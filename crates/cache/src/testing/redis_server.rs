//! `TestRedis`: a throwaway redis-server for tests.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orchestrator_config::{RedisConfig, Secret};

/// How long a fresh redis-server may take to answer PING.
const START_BOUND: Duration = Duration::from_secs(10);

/// A `redis-server` on `127.0.0.1:<free port>`, without persistence, killed on drop.
///
/// `stop`/`restart` keep the port, so a cache built against [`TestRedis::url`]
/// can be shown to recover; `pause`/`resume` (SIGSTOP/SIGCONT) simulate a hung server.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts a server; panics with a clear message when `redis-server` is missing.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a server that requires `password` (`requirepass`, user `default`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_inner(Some(password.to_owned()))
    }

    /// A free port that nothing listens on (yet): for "Redis is down at start" tests,
    /// followed by [`TestRedis::start_on`].
    pub fn free_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.local_addr().expect("local_addr").port()
    }

    /// Starts a server on a given port (one from [`TestRedis::free_port`]).
    pub fn start_on(port: u16) -> Self {
        let mut redis = Self {
            port,
            password: None,
            child: None,
        };
        redis.restart();
        redis
    }

    fn start_inner(password: Option<String>) -> Self {
        let mut redis = Self {
            port: Self::free_port(),
            password,
            child: None,
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:<port>/0` (no credentials: pass the password through config).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A `RedisConfig` for this server with the given key prefix and the defaults otherwise.
    pub fn config(&self, key_prefix: &str) -> RedisConfig {
        RedisConfig {
            url: self.url(),
            password: self.password.as_deref().map(Secret::new),
            key_prefix: key_prefix.to_owned(),
            ..RedisConfig::default()
        }
    }

    /// Kills the server (SIGKILL) and waits for it; the port stays reserved for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs)
    /// and waits, bounded, until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (apt-get install -y redis-server); the Redis tests need a real server"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_BOUND;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "redis-server on port {} exited at start ({status}); is the port taken?",
                        self.port
                    );
                }
            }
            if answers_ping(addr) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_BOUND:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.pid().expect("redis-server is not running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal).expect("signal redis-server");
    }
}

/// True when something on `addr` speaks RESP (`+PONG`, or `-NOAUTH` with a password).
fn answers_ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped process.
        self.stop();
    }
}
