//! The `instructions` scenario: user-space instructions per authenticated GET,
//! counted by valgrind's callgrind, for the orchestrator, for NGINX and for
//! the bare hyper proxy (the floor of the stack).
//!
//! CPU time per request on a shared VM moves by ±20% between runs; an
//! instruction count moves by well under 1%, so this is the figure to
//! compare builds by (kernel time, the other half of a request's cost, is
//! not in it: both proxies make the same syscalls per request). Each process
//! runs under `valgrind --tool=callgrind`; after a warm-up the counters are
//! zeroed (`callgrind_control -z`), a fixed number of requests is sent, and a
//! dump (`callgrind_control -d`) gives the total.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use benches::Error;
use benches::client::{Conn, drain, get};
use hyper::header;

use crate::procs::{self, Cpus, Nginx, Orchestrator, Sampling, Secrets, Upstream};
use crate::report::{Fact, Report};

/// Requests counted per process (after `WARM_UP` uncounted ones).
const REQUESTS: usize = 4_000;
const WARM_UP: usize = 400;
/// Concurrent keep-alive connections the requests are spread over.
const CONNECTIONS: usize = 16;
/// The span batch processor's export schedule (the SDK's default,
/// `OTEL_BSP_SCHEDULE_DELAY`).
const EXPORT_SCHEDULE: Duration = Duration::from_secs(5);

/// Runs the scenario; notes why when valgrind is missing.
pub(crate) async fn instructions(
    cpus: &Cpus,
    report: &mut Report,
    bin: &Path,
    secrets: &Secrets,
    upstream: SocketAddr,
    nginx: Option<&Path>,
    keep_in: Option<&Path>,
) -> Result<(), Error> {
    let (Some(valgrind), Some(control)) =
        (procs::which("valgrind"), procs::which("callgrind_control"))
    else {
        report.note(
            "valgrind not installed: instructions scenario skipped (apt-get install -y valgrind)"
                .to_owned(),
        );
        return Ok(());
    };
    let temp = tempfile::Builder::new().prefix("callgrind-").tempdir()?;
    let dir = match keep_in {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            // Dumps of an earlier run would be taken for this run's.
            for e in std::fs::read_dir(d)?.flatten() {
                let f = e.file_name();
                let f = f.to_string_lossy();
                if [
                    "orchestrator.out",
                    "orchestrator-traced.out",
                    "orchestrator-traced-10.out",
                    "nginx.out",
                    "bare-proxy.out",
                ]
                .iter()
                .any(|p| f.starts_with(p))
                {
                    std::fs::remove_file(e.path())?;
                }
            }
            d.to_owned()
        }
        None => temp.path().to_owned(),
    };
    let wrapper = |name: &str| {
        vec![
            valgrind.display().to_string(),
            "--tool=callgrind".to_owned(),
            format!("--callgrind-out-file={}/{name}.out", dir.display()),
        ]
    };

    let orch =
        Orchestrator::start_wrapped(bin, cpus, secrets, upstream, &wrapper("orchestrator")).await?;
    let orch_ir = count_signed_in(&control, orch, &dir, "orchestrator", Duration::ZERO).await?;

    // The same with every request traced, spans exported to a sink on the
    // upstream; the count waits out the batch processor's schedule, so the
    // export of the last partial batch is in it too.
    let traced = Orchestrator::start_traced(
        bin,
        cpus,
        secrets,
        upstream,
        upstream,
        Sampling::Every,
        &wrapper("orchestrator-traced"),
    )
    .await?;
    let settle = EXPORT_SCHEDULE + Duration::from_secs(1);
    let traced_ir = count_signed_in(&control, traced, &dir, "orchestrator-traced", settle).await?;
    // And as operators run it: a tenth of the traces sampled; what the
    // other nine tenths cost (ids, context, `traceparent`, nothing
    // recorded) is in it.
    let tenth = Orchestrator::start_traced(
        bin,
        cpus,
        secrets,
        upstream,
        upstream,
        Sampling::Ratio(0.1),
        &wrapper("orchestrator-traced-10"),
    )
    .await?;
    let tenth_ir = count_signed_in(&control, tenth, &dir, "orchestrator-traced-10", settle).await?;

    let nginx_ir = match nginx {
        Some(nginx_bin) => {
            let n = Nginx::start_wrapped(nginx_bin, cpus, upstream, &wrapper("nginx")).await?;
            let host = format!("{}:{}", procs::APP_HOST, n.addr.port());
            Some(
                count(&control, n.pid, &dir, "nginx", Duration::ZERO, |k| {
                    load(n.addr, &host, None, k)
                })
                .await?,
            )
        }
        None => None,
    };
    let bare = Upstream::bare_proxy(cpus, upstream, &wrapper("bare-proxy")).await?;
    let bare_host = format!("{}:{}", procs::APP_HOST, bare.addr.port());
    let bare_ir = count(
        &control,
        bare.pid,
        &dir,
        "bare-proxy",
        Duration::ZERO,
        |k| load(bare.addr, &bare_host, None, k),
    )
    .await?;
    drop(bare);
    let per = |ir: u64| ir as f64 / REQUESTS as f64;
    // A traced count, and what it adds to the plain one.
    let added = |ir: u64| {
        format!(
            "{:.0} (+{:.0}, +{:.1}%)",
            per(ir),
            per(ir) - per(orch_ir),
            (ir as f64 / orch_ir as f64 - 1.0) * 100.0
        )
    };
    report.fact(Fact::new(
        "user-space instructions per authenticated GET, orchestrator (callgrind)",
        format!("{:.0}", per(orch_ir)),
        "(lower is better; compare builds by it)",
        None,
    ));
    report.fact(Fact::new(
        "same, traces on at 100% (spans exported)",
        added(traced_ir),
        "what tracing adds per request, export included",
        None,
    ));
    report.fact(Fact::new(
        "same, traces on at 10% (parentbased_traceidratio 0.1)",
        added(tenth_ir),
        "what tracing adds at a production sampling ratio",
        None,
    ));
    if let Some(n) = nginx_ir {
        report.fact(Fact::new(
            "same, NGINX proxy_pass",
            format!(
                "{:.0} (orchestrator {:.2}×)",
                per(n),
                orch_ir as f64 / n as f64
            ),
            "orchestrator ≤ 1.0×",
            Some(orch_ir <= n),
        ));
    }
    report.fact(Fact::new(
        "same, the bare hyper proxy (the floor of the stack)",
        format!(
            "{:.0} (orchestrator {:.2}×{})",
            per(bare_ir),
            orch_ir as f64 / bare_ir as f64,
            nginx_ir.map_or_else(String::new, |n| format!(
                ", NGINX {:.2}×",
                n as f64 / bare_ir as f64
            ))
        ),
        "what any proxy on hyper and tokio starts from",
        None,
    ));
    report.note(format!(
        "instructions scenario: {REQUESTS} GET /small over {CONNECTIONS} connections after \
         {WARM_UP} uncounted, each process under valgrind --tool=callgrind"
    ));
    Ok(())
}

/// Signs a browser in to `orch`, counts its authenticated GETs (see
/// [`count`]) and stops it.
async fn count_signed_in(
    control: &Path,
    orch: Orchestrator,
    dir: &Path,
    name: &str,
    settle: Duration,
) -> Result<u64, Error> {
    let (_browser, session) = procs::signed_in(orch.addr, &orch.host).await?;
    let cookie = format!("orchestrator_session={session}");
    let ir = count(control, orch.pid, dir, name, settle, |n| {
        load(orch.addr, &orch.host, Some(&cookie), n)
    })
    .await?;
    orch.stop().await;
    Ok(ir)
}

/// Warms up (`WARM_UP` requests), zeroes the counters of `pid`, runs
/// `REQUESTS` requests, waits `settle` (for work the process does after
/// answering, e.g. exporting spans), dumps, and returns the instructions of
/// the dump.
async fn count<F, Fut>(
    control: &Path,
    pid: u32,
    dir: &Path,
    name: &str,
    settle: Duration,
    load: F,
) -> Result<u64, Error>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<usize, Error>>,
{
    let _ = load(WARM_UP).await?;
    callgrind_control(control, "-z", pid).await?;
    let served = load(REQUESTS).await?;
    if served != REQUESTS {
        return Err(format!("{name}: {served} of {REQUESTS} requests answered 200").into());
    }
    tokio::time::sleep(settle).await;
    callgrind_control(control, "-d", pid).await?;
    let dump = newest_dump(dir, name)?;
    let text = std::fs::read_to_string(&dump)?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{name}: no instruction total in {}", dump.display()).into())
}

async fn callgrind_control(control: &Path, what: &str, pid: u32) -> Result<(), Error> {
    let out = tokio::process::Command::new(control)
        .arg(what)
        .arg(pid.to_string())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!(
            "callgrind_control {what} {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// The last dump of `name` (callgrind numbers them `<file>.1`, `.2`, …).
fn newest_dump(dir: &Path, name: &str) -> Result<PathBuf, Error> {
    let prefix = format!("{name}.out.");
    std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| Some((f.strip_prefix(&prefix)?.parse::<u32>().ok()?, f)))
        .max()
        .map(|(_, f)| dir.join(f))
        .ok_or_else(|| format!("{name}: callgrind wrote no dump").into())
}

/// `n` GETs of `/small`, spread over `CONNECTIONS` connections; how many
/// answered 200 with the whole body.
async fn load(
    addr: SocketAddr,
    host: &str,
    cookie: Option<&str>,
    n: usize,
) -> Result<usize, Error> {
    let per_conn = n / CONNECTIONS;
    let tasks = (0..CONNECTIONS).map(|_| async move {
        let mut conn = Conn::connect(addr).await?;
        let mut ok = 0;
        for _ in 0..per_conn {
            let mut req = get(host, "/small")?;
            if let Some(c) = cookie {
                req.headers_mut().insert(header::COOKIE, c.parse()?);
            }
            let resp = conn.send(req).await?;
            let status = resp.status();
            let len = drain(resp).await?;
            if status == 200 && len == benches::upstream::SMALL_BODY.len() {
                ok += 1;
            }
        }
        Ok::<_, Error>(ok)
    });
    let mut total = 0;
    for r in futures::future::join_all(tasks).await {
        total += r?;
    }
    Ok(total)
}
