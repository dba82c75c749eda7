//! The `orchestrator` binary. It only wires: parse the CLI, load the config,
//! build the runtime from the other crates, run the listeners, wait for a
//! signal, drain.

#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod app;
mod cli;
mod commands;
mod dispatch;
mod jobs;
mod listener;
mod logging;
mod metrics;
mod readiness;
mod reload;
mod telemetry;
mod tls;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use orchestrator_config::{CacheBackend, SystemSources};
use tokio::sync::watch;

use crate::app::{App, Parts, Runtime};

/// jemalloc keeps RSS per live session and per login markedly lower than
/// glibc's allocator under the gateway's mix of short- and long-lived
/// allocations (see `benches/README.md`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every rustls user in the process (listener, Redis, IdP client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        None => run_blocking(&cli.run.config),
        Some(Command::Run(args)) => run_blocking(&args.config),
        Some(Command::Validate(args)) => commands::validate(&args.config),
        Some(Command::HashPassword) => commands::hash_password(),
        Some(Command::Keys { command }) => commands::keys(command),
        Some(Command::Probe {
            url,
            timeout_seconds,
        }) => match current_thread() {
            Ok(rt) => rt.block_on(commands::probe(&url, Duration::from_secs(timeout_seconds))),
            Err(code) => code,
        },
    }
}

fn current_thread() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| commands::report(std::iter::once(format!("cannot start runtime: {e}"))))
}

fn run_blocking(config_path: &Path) -> ExitCode {
    let config = match orchestrator_config::load(config_path, &SystemSources) {
        Ok(c) => c,
        Err(errors) => return commands::report(errors.iter().map(ToString::to_string)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return commands::report(std::iter::once(format!("cannot start runtime: {e}"))),
    };
    let trace_counters = metrics::trace_counters();
    // Batches are sent on the runtime: the pipeline is built inside it.
    let traces = {
        let _inside = runtime.enter();
        match telemetry::init(&config.traces, trace_counters.clone()) {
            Ok(t) => t,
            Err(e) => return commands::report(std::iter::once(e)),
        }
    };
    // Held to the end of this function: dropping it flushes the log.
    let (levels, log) = match logging::init(&config.log, traces.as_ref().map(|(t, _)| t.clone())) {
        Ok(pair) => pair,
        Err(e) => return commands::report(std::iter::once(e)),
    };
    let result = runtime.block_on(run(config_path, config, levels, &log, trace_counters));
    if let Some((_, traces)) = &traces {
        let _inside = runtime.enter();
        traces.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problems) => {
            for p in &problems {
                tracing::error!(problem = %p, "cannot start");
            }
            commands::report(problems.into_iter())
        }
    }
}

async fn run(
    config_path: &Path,
    config: orchestrator_config::Config,
    levels: logging::LevelHandle,
    log: &logging::LogOutput,
    trace_counters: telemetry::Counters,
) -> Result<(), Vec<String>> {
    let metrics = metrics::Metrics::new().map_err(|e| vec![format!("metrics: {e}")])?;
    for counter in [trace_counters.export_failures, trace_counters.spans_dropped] {
        metrics
            .registry
            .register(Box::new(counter))
            .map_err(|e| vec![format!("metrics: {e}")])?;
    }
    let cache = orchestrator_cache::build(
        &config.cache,
        Arc::new(
            orchestrator_cache::CacheMetrics::new(&metrics.registry)
                .map_err(|e| vec![format!("metrics: {e}")])?,
        ),
    )
    .await
    .map_err(|e| vec![format!("cache: {e}")])?;
    if config.cache.backend == CacheBackend::Memory && config.oidc_provider.is_some() {
        tracing::warn!(
            "cache.backend is memory: OIDC codes, refresh tokens and SSO sessions live in this process only; \
             run exactly one replica, or use cache.backend redis"
        );
    }

    let admin_listener = listener::bind("admin.address", config.admin.address).await;
    let main_listener = listener::bind("listen.address", config.listen.address).await;
    let (admin_listener, main_listener) = match (admin_listener, main_listener) {
        (Ok(a), Ok(m)) => (a, m),
        (a, m) => return Err([a.err(), m.err()].into_iter().flatten().collect()),
    };

    let parts = Parts::new(cache, &metrics.registry).map_err(|e| vec![e])?;
    let runtime = Runtime::build(config.clone(), &parts, None)?;
    let access = access_log::AccessLog::new(&log.writer, log.json);
    let app = Arc::new(App::new(metrics, parts, runtime, levels, access).map_err(|e| vec![e])?);
    app.metrics.count_dropped_log_lines(log.dropped.clone());

    // Before anything can report ready: a SIGTERM that arrives right after
    // must drain, not kill the process with the default action.
    let signals = Signals::install();
    // Also before: an edit made once the pod reports ready is seen.
    let _watcher = reload::start(config_path, &config, app.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_task = tokio::spawn(admin::serve(admin_listener, app.clone(), stop_rx.clone()));
    let main_task = tokio::spawn(listener::serve(main_listener, app.clone(), stop_rx.clone()));
    let jobs_task = tokio::spawn(jobs::run(app.clone()));
    app.readiness.set_listeners_bound();
    tracing::info!(
        listen = %config.listen.address,
        admin = %config.admin.address,
        tls = config.listen.tls.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "orchestrator started"
    );

    signals.wait().await;
    // Shutdown: readiness off first, so endpoints and the ingress stop sending.
    let shutdown = app.runtime().config.shutdown.clone();
    app.readiness.start_shutdown();
    tracing::info!(delay = ?shutdown.delay, "shutdown started: /readyz now 503");
    tokio::time::sleep(shutdown.delay).await;

    // Stop accepting on the main listener; in-flight requests get drainTimeout.
    let _ = stop_tx.send(true);
    let graceful = match main_task.await {
        Ok(g) => g,
        Err(e) => return Err(vec![format!("main listener task failed: {e}")]),
    };
    let in_flight = graceful.count();
    tracing::info!(connections = in_flight, timeout = ?shutdown.drain_timeout, "draining");
    if tokio::time::timeout(shutdown.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
    admin_task.abort();
    // Jobs still running come back to another replica after their lease.
    jobs_task.abort();
    tracing::info!("shutdown complete");
    Ok(())
}

/// SIGTERM (Kubernetes) and SIGINT (Ctrl-C), caught from the moment they
/// are installed.
struct Signals {
    handlers: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => None,
        };
        Self { handlers }
    }

    async fn wait(self) {
        match self.handlers {
            Some((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            // Without signal handlers, Ctrl-C through tokio is the fallback.
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
