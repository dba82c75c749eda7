//! Password verification on a small fixed set of threads, each reusing one
//! argon2 memory buffer.
//!
//! argon2id is memory-hard by design (19 MiB per check with the default
//! parameters). Run on tokio's blocking pool, a burst of logins ran one check
//! per thread, each allocating its own buffer, and the allocator kept those
//! pages: eight concurrent logins left the process near 1 GiB, far above a pod's
//! memory limit. Here at most `workers` checks run at once and each worker
//! allocates its buffer once, so memory stays at workers × m_cost whatever the
//! burst; further logins wait their turn.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::PasswordHash;
use argon2::{Argon2, Block, Params, Version};
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;

/// The largest argon2 memory cost accepted (256 MiB): a hash asking for more
/// is treated as not matching rather than allowed to exhaust memory.
const MAX_BLOCKS: usize = 256 * 1024;

struct Job {
    phc: String,
    password: String,
    reply: oneshot::Sender<bool>,
}

/// Verifies argon2 PHC strings on dedicated threads; they stop when this is dropped.
#[derive(Debug)]
pub(crate) struct PasswordChecker {
    jobs: mpsc::Sender<Job>,
}

impl PasswordChecker {
    /// Starts `workers` verification threads (at least one).
    pub(crate) fn new(workers: usize) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password verification thread");
            }
        }
        Self { jobs }
    }

    /// One worker per CPU, at most four: argon2 is CPU-bound, more would only queue in the kernel.
    pub(crate) fn per_cpu() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cpus.clamp(1, 4))
    }

    /// True when `password` matches the PHC string `phc`.
    pub(crate) async fn verify(&self, phc: String, password: String) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .jobs
            .send(Job {
                phc,
                password,
                reply,
            })
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        // The lock is held only while waiting for the next job, not while hashing.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let ok = verify_with(&mut blocks, &job.phc, job.password.as_bytes());
        let _ = job.reply.send(ok);
    }
}

/// Recomputes the hash with the PHC string's own parameters and salt in `blocks`
/// and compares in constant time.
fn verify_with(blocks: &mut Vec<Block>, phc: &str, password: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        argon2::Algorithm::try_from(hash.algorithm),
        Params::try_from(&hash),
    ) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let needed = params.block_count();
    if needed > MAX_BLOCKS {
        tracing::warn!(
            m_cost_kib = needed,
            "password hash asks for more memory than allowed"
        );
        return false;
    }
    if blocks.len() < needed {
        blocks.resize(needed, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..needed])
        .is_err()
    {
        return false;
    }
    out.ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher as _;
    use argon2::password_hash::SaltString;

    use super::*;

    fn phc(password: &str, params: Params) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::new(argon2::Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn verifies_like_the_argon2_crate_and_reuses_its_buffer() {
        let checker = PasswordChecker::new(2);
        let default = phc("right", Params::default());
        assert!(checker.verify(default.clone(), "right".into()).await);
        assert!(!checker.verify(default, "wrong".into()).await);
        // Other parameters (smaller and larger memory) on the same workers.
        let small = phc("pw", Params::new(8192, 1, 1, None).unwrap());
        assert!(checker.verify(small.clone(), "pw".into()).await);
        assert!(!checker.verify(small, "pW".into()).await);
        let large = phc("pw", Params::new(32768, 1, 1, None).unwrap());
        assert!(checker.verify(large, "pw".into()).await);
        assert!(!checker.verify("not a phc".into(), "pw".into()).await);
    }

    #[tokio::test]
    async fn a_burst_is_served_by_the_fixed_workers() {
        let checker = Arc::new(PasswordChecker::new(2));
        let hash = phc("pw", Params::new(8192, 1, 1, None).unwrap());
        let checks = (0..16).map(|i| {
            let checker = checker.clone();
            let hash = hash.clone();
            tokio::spawn(async move {
                let pw = if i % 2 == 0 { "pw" } else { "no" };
                checker.verify(hash, pw.into()).await == (i % 2 == 0)
            })
        });
        for c in checks {
            assert!(c.await.unwrap());
        }
    }
}
