//! The `streams` scenario: memory per in-flight streamed response. N clients
//! each ask for the 1 MiB download, read its head and first frame, and then
//! stop reading, as slow clients do. Once every stream has started and the
//! buffers have had time to fill, the proxy's RSS growth over its RSS before
//! is divided by N: what one stalled stream holds in the proxy (its buffers
//! at both ends and whatever it read from the upstream and could not send).
//! The kernel's socket buffers are not in RSS. Run at 64 and 1,024 streams,
//! for the orchestrator and NGINX.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use benches::Error;
use benches::client::{Conn, get};
use http_body_util::BodyExt as _;
use hyper::header;
use tokio::sync::watch;

use crate::procs::ProcStats;
use crate::report::{Fact, Report};

/// Stream counts to measure at.
const COUNTS: [usize; 2] = [64, 1024];
/// How long every stream may take to start.
const START_BOUND: Duration = Duration::from_secs(60);
/// Time for the buffers of stalled streams to fill once all have started.
const SETTLE: Duration = Duration::from_millis(500);

/// One proxy to measure.
pub(crate) struct Subject<'a> {
    pub(crate) name: &'a str,
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
    pub(crate) host: &'a str,
    pub(crate) cookie: Option<&'a str>,
}

/// Measures each subject at each count; adds one result per count.
pub(crate) async fn streams(report: &mut Report, subjects: &[Subject<'_>]) -> Result<(), Error> {
    for n in COUNTS {
        let mut per = Vec::new();
        for s in subjects {
            per.push((s.name, stalled(s, n).await?));
        }
        let text = per
            .iter()
            .map(|(name, kib)| format!("{name} {kib:.0} KiB"))
            .collect::<Vec<_>>()
            .join(", ");
        let orch = per
            .iter()
            .find(|(name, _)| *name == "orchestrator")
            .map(|p| p.1);
        report.fact(Fact::new(
            &format!("RSS per stalled 1 MiB download, {n} at once"),
            text,
            "orchestrator ≤ 128 KiB per in-flight streamed request",
            orch.map(|kib| kib <= 128.0),
        ));
    }
    Ok(())
}

/// RSS growth of `s` per stream (KiB) with `n` stalled streams.
async fn stalled(s: &Subject<'_>, n: usize) -> Result<f64, Error> {
    let before = ProcStats::read(s.pid).rss_kib;
    let started = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let started = started.clone();
        let mut stopped = stopped.clone();
        let (addr, host, cookie) = (s.addr, s.host.to_owned(), s.cookie.map(str::to_owned));
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut req = get(&host, "/large")?;
            if let Some(c) = cookie {
                req.headers_mut().insert(header::COOKIE, c.parse()?);
            }
            let resp = conn.send(req).await?;
            if resp.status() != 200 {
                return Err::<(), Error>(format!("status {}", resp.status()).into());
            }
            let mut body = resp.into_body();
            let _ = body.frame().await;
            started.fetch_add(1, Ordering::SeqCst);
            // Hold the stream open, unread, until measured.
            let _ = stopped.wait_for(|s| *s).await;
            drop(body);
            Ok(())
        }));
    }
    let deadline = Instant::now() + START_BOUND;
    while started.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline || tasks.iter().any(|t| t.is_finished()) {
            let _ = stop.send(true);
            for t in tasks {
                if let Ok(Err(e)) = t.await {
                    return Err(format!("{}: a stream failed: {e}", s.name).into());
                }
            }
            return Err(format!("{}: not every stream started", s.name).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let during = ProcStats::read(s.pid).rss_kib;
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(during.saturating_sub(before) as f64 / n as f64)
}
