//! `RedisCache`: the shared backend on the `redis` crate, standalone or cluster.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orchestrator_config::RedisConfig;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, ConnectionInfo, IntoConnectionInfo, RedisError, RedisFuture, Script,
    TlsCertificates, Value,
};

use crate::cache::ttl_millis;
use crate::{Cache, CacheError};

/// INCR, and the TTL only when this call created the counter: a fixed window
/// that later increments never extend. A script, because INCR + PEXPIRE must
/// not be split by a crash (a counter without TTL would lock a user out forever).
/// A delayed queue is a sorted set scored by due time (milliseconds: exact
/// in a double until the year 287,000).
const ENQUEUE_SCRIPT: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
";

const CLAIM_DUE_SCRIPT: &str = r"
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, item in ipairs(items) do
  redis.call('ZADD', KEYS[1], ARGV[2], item)
end
return items
";

const INCR_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// DECR only when the counter exists (and is above 0): DECR on a missing key
/// would create it without a TTL. DECR keeps the key's expiry.
const DECR_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local n = tonumber(v)
if n == nil then return redis.error_reply('ERR value is not an integer') end
if n <= 0 then return 0 end
return redis.call('DECR', KEYS[1])
";

/// The eviction policy that never drops keys: anything else lets a full Redis
/// silently discard revocations, refresh-token families and sessions.
const SAFE_POLICY: &str = "noeviction";

/// The Redis backend.
///
/// Construction never talks to Redis: the first operations connect, so the
/// process starts while Redis is down, `/readyz` reports it through
/// [`Cache::health`], and the cache recovers by itself when Redis comes up.
/// Every call is bounded by `operationTimeout` ([`CacheError::Timeout`]);
/// connection failures are [`CacheError::Unavailable`].
pub struct RedisCache {
    conn: Backend,
    prefix: String,
    op_timeout: Duration,
    incr: Script,
    decr: Script,
    enqueue: Script,
    claim_due: Script,
    /// Set once `maxmemory-policy` has been checked (and warned about).
    policy_checked: AtomicBool,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field(
                "mode",
                &match self.conn {
                    Backend::Standalone(_) => "standalone",
                    Backend::Cluster(_) => "cluster",
                },
            )
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish()
    }
}

enum Backend {
    /// Multiplexed; reconnects itself after a failure (on the next call).
    Standalone(ConnectionManager),
    /// `ClusterClient::get_async_connection` connects eagerly, so the
    /// connection is made on first use and retried on later calls until it works.
    Cluster(Box<Cluster>),
}

/// The cluster client and its connection once made (boxed: it is large).
struct Cluster {
    client: ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

/// One connection handle of either kind, so commands are written once.
enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Parses one URL; the error names the key but never echoes the URL (it may carry a password).
fn parse_url(key: &'static str, url: &str) -> Result<ConnectionInfo, CacheError> {
    let info = url.into_connection_info().map_err(|e| CacheError::Config {
        key,
        reason: format!("not a valid redis:// or rediss:// URL ({})", describe(&e)),
    })?;
    if matches!(info.addr(), redis::ConnectionAddr::Unix(_)) {
        return Err(CacheError::Config {
            key,
            reason: "unix sockets are not supported; use redis:// or rediss://".into(),
        });
    }
    Ok(info)
}

/// Credentials from config win over any in the URL: the password comes from a Secret.
fn with_credentials(info: ConnectionInfo, cfg: &RedisConfig) -> ConnectionInfo {
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &cfg.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &cfg.password {
        settings = settings.set_password(password.expose());
    }
    info.set_redis_settings(settings)
}

fn read_ca(cfg: &RedisConfig) -> Result<Option<Vec<u8>>, CacheError> {
    match &cfg.ca_file {
        None => Ok(None),
        Some(path) => std::fs::read(path)
            .map(Some)
            .map_err(|e| CacheError::Config {
                key: "cache.redis.caFile",
                reason: format!("cannot read {}: {}", path.display(), e.kind()),
            }),
    }
}

impl RedisCache {
    /// Builds the client from `cfg` without connecting (see the type's docs).
    ///
    /// Fails only on configuration errors: a malformed URL (the error names
    /// `cache.redis.url` or `cache.redis.clusterUrls`, never the password) or
    /// an unreadable `caFile`. Needs a Tokio runtime.
    pub fn new(cfg: &RedisConfig) -> Result<Self, CacheError> {
        let ca = read_ca(cfg)?;
        let conn = if cfg.cluster_urls.is_empty() {
            Backend::Standalone(Self::standalone(cfg, ca)?)
        } else {
            Backend::Cluster(Box::new(Cluster {
                client: Self::cluster(cfg, ca)?,
                conn: tokio::sync::OnceCell::new(),
            }))
        };
        Ok(Self {
            conn,
            prefix: cfg.key_prefix.clone(),
            op_timeout: cfg.operation_timeout,
            incr: Script::new(INCR_SCRIPT),
            decr: Script::new(DECR_SCRIPT),
            enqueue: Script::new(ENQUEUE_SCRIPT),
            claim_due: Script::new(CLAIM_DUE_SCRIPT),
            policy_checked: AtomicBool::new(false),
        })
    }

    fn standalone(cfg: &RedisConfig, ca: Option<Vec<u8>>) -> Result<ConnectionManager, CacheError> {
        let key = "cache.redis.url";
        let info = with_credentials(parse_url(key, &cfg.url)?, cfg);
        let client = match ca {
            Some(root) => Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            ),
            None => Client::open(info),
        }
        .map_err(|e| CacheError::Config {
            key,
            reason: describe(&e),
        })?;
        // No retries inside the manager: a refused connection fails this call
        // at once (Unavailable) and the next call tries again, instead of every
        // caller waiting out a backoff it cannot see.
        let manager_cfg = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.operation_timeout));
        ConnectionManager::new_lazy_with_config(client, manager_cfg).map_err(|e| {
            CacheError::Config {
                key,
                reason: describe(&e),
            }
        })
    }

    fn cluster(cfg: &RedisConfig, ca: Option<Vec<u8>>) -> Result<ClusterClient, CacheError> {
        let key = "cache.redis.clusterUrls";
        let nodes = cfg
            .cluster_urls
            .iter()
            .map(|url| parse_url(key, url))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = ClusterClient::builder(nodes)
            .connection_timeout(cfg.connect_timeout)
            .response_timeout(cfg.operation_timeout)
            .retries(1);
        if let Some(user) = &cfg.username {
            builder = builder.username(user);
        }
        if let Some(password) = &cfg.password {
            builder = builder.password(password.expose());
        }
        if let Some(root) = ca {
            builder = builder.certs(TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            });
        }
        builder.build().map_err(|e| CacheError::Config {
            key,
            reason: describe(&e),
        })
    }

    /// A command on one (prefixed) key.
    fn keyed(&self, name: &str, key: &str) -> Cmd {
        let mut cmd = redis::cmd(name);
        cmd.arg(self.key(key));
        cmd
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    async fn connection(&self) -> Result<Conn, RedisError> {
        match &self.conn {
            Backend::Standalone(manager) => Ok(Conn::Standalone(manager.clone())),
            Backend::Cluster(cluster) => {
                let c = cluster
                    .conn
                    .get_or_try_init(|| cluster.client.get_async_connection())
                    .await?;
                Ok(Conn::Cluster(c.clone()))
            }
        }
    }

    /// Runs one operation under the operation timeout, mapping errors.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let work = async {
            let conn = self.connection().await?;
            op(conn).await
        };
        match tokio::time::timeout(self.op_timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(map_error(&e)),
            Err(_elapsed) => Err(CacheError::Timeout),
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: Cmd) -> Result<T, CacheError> {
        self.run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }
}

/// A description of a Redis error without keys, values or credentials:
/// the category and the server's error code only.
fn describe(e: &RedisError) -> String {
    match e.code() {
        Some(code) => format!("{} ({code})", e.category()),
        None => e.category().to_owned(),
    }
}

fn map_error(e: &RedisError) -> CacheError {
    use redis::ErrorKind;
    if e.is_timeout() {
        return CacheError::Timeout;
    }
    if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_cluster_error()
        || e.is_unrecoverable_error()
    {
        return CacheError::Unavailable(describe(e));
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed | ErrorKind::Client | ErrorKind::InvalidClientConfig => {
            CacheError::Unavailable(describe(e))
        }
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => CacheError::Corrupt(describe(e)),
        _ => CacheError::Backend(describe(e)),
    }
}

#[async_trait::async_trait]
impl Cache for RedisCache {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.query(self.keyed("GET", key)).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut cmd = self.keyed("SET", key);
        cmd.arg(value).arg("PX").arg(ttl_millis(ttl));
        self.query::<()>(cmd).await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut cmd = self.keyed("SET", key);
        cmd.arg(value).arg("NX").arg("PX").arg(ttl_millis(ttl));
        // `OK` when stored, nil when the key exists.
        let stored: Option<String> = self.query(cmd).await?;
        Ok(stored.is_some())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.query(self.keyed("GETDEL", key)).await
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let n: u64 = self.query(self.keyed("DEL", key)).await?;
        Ok(n > 0)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut cmd = self.keyed("PEXPIRE", key);
        cmd.arg(ttl_millis(ttl));
        let n: u64 = self.query(cmd).await?;
        Ok(n == 1)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, CacheError> {
        let key = self.key(key);
        let ms = ttl_millis(ttl);
        let n = self
            .run(
                |mut conn| async move { self.incr.key(&key).arg(ms).invoke_async(&mut conn).await },
            )
            .await;
        counter(n)
    }

    async fn decr(&self, key: &str) -> Result<u64, CacheError> {
        let key = self.key(key);
        let n = self
            .run(|mut conn| async move { self.decr.key(&key).invoke_async(&mut conn).await })
            .await;
        counter(n)
    }

    async fn enqueue(
        &self,
        queue: &str,
        item: &[u8],
        due_ms: u64,
        max: u64,
    ) -> Result<bool, CacheError> {
        let key = self.key(queue);
        let n: Result<i64, CacheError> = self
            .run(|mut conn| async move {
                self.enqueue
                    .key(&key)
                    .arg(item)
                    .arg(due_ms)
                    .arg(max)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        Ok(n? == 1)
    }

    async fn claim_due(
        &self,
        queue: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, CacheError> {
        let key = self.key(queue);
        self.run(|mut conn| async move {
            self.claim_due
                .key(&key)
                .arg(now_ms)
                .arg(now_ms.saturating_add(lease_ms))
                .arg(limit)
                .invoke_async(&mut conn)
                .await
        })
        .await
    }

    async fn dequeue(&self, queue: &str, item: &[u8]) -> Result<bool, CacheError> {
        let mut cmd = self.keyed("ZREM", queue);
        cmd.arg(item);
        let n: u64 = self.query(cmd).await?;
        Ok(n > 0)
    }

    async fn health(&self) -> Result<(), CacheError> {
        let pong: String = self.query(redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(CacheError::Backend("unexpected PING reply".into()))
        }
    }

    async fn evictions(&self) -> Result<Option<u64>, CacheError> {
        // In a cluster INFO answers for one node only; a partial count would
        // mislead, so cluster mode reports nothing.
        if matches!(self.conn, Backend::Cluster(_)) {
            return Ok(None);
        }
        if !self.policy_checked.load(Ordering::Relaxed) {
            let mut cmd = redis::cmd("INFO");
            cmd.arg("memory");
            let memory: String = self.query(cmd).await?;
            self.policy_checked.store(true, Ordering::Relaxed);
            match info_field(&memory, "maxmemory_policy") {
                Some(SAFE_POLICY) | None => {}
                Some(policy) => tracing::warn!(
                    maxmemory_policy = policy,
                    "Redis may evict keys under memory pressure: revoked grants, refresh-token \
                     reuse markers and sessions can silently disappear; set \
                     `maxmemory-policy noeviction` (watch orchestrator_cache_evictions_total)"
                ),
            }
        }
        let mut cmd = redis::cmd("INFO");
        cmd.arg("stats");
        let stats: String = self.query(cmd).await?;
        Ok(info_field(&stats, "evicted_keys").and_then(|v| v.parse().ok()))
    }
}

/// The value of `name` in an INFO reply (`name:value` lines).
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// A counter script's answer: a server "response error" means the key holds
/// something that is not an integer.
fn counter(n: Result<i64, CacheError>) -> Result<u64, CacheError> {
    let n = n.map_err(|e| match e {
        CacheError::Backend(_) => CacheError::Corrupt("value is not a counter".into()),
        other => other,
    })?;
    u64::try_from(n).map_err(|_| CacheError::Corrupt("negative counter".into()))
}
