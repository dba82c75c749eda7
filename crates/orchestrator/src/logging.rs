//! Logs through tracing: JSON when stdout is not a terminal (or `log.format: json`),
//! text otherwise; the level from `RUST_LOG` or `log.level`. `log.level` is
//! reloadable (the filter sits behind a reload handle); the format is not.
//!
//! Nothing on a request's path writes to stdout: lines go through a bounded
//! channel to one writer thread (`tracing-appender`'s non-blocking writer),
//! which writes them in batches through a 64 KiB buffer and flushes whenever
//! the channel is empty. When the channel is full a line (of any level) is
//! dropped and counted ([`LogOutput::dropped`]) rather than blocking a request.

use std::io::{IsTerminal, Write as _};
use std::os::fd::AsFd as _;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

use orchestrator_config::{LogConfig, LogFormat};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, fmt, reload};

/// Changes the level filter of the running process.
pub(crate) struct LevelHandle {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it wins over `log.level`, now and on reload.
    from_env: bool,
    /// Traces are exported: the filter lets their spans through.
    traces: bool,
}

/// The filter for `level`, letting the trace spans through when traces
/// are on (they go to the trace layer only, never to the log).
fn level_filter(level: &str, traces: bool) -> Result<EnvFilter, String> {
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    Ok(if traces {
        filter.add_directive(
            format!("{}=trace", orchestrator_http::trace_context::TARGET)
                .parse()
                .map_err(|e: tracing_subscriber::filter::ParseError| e.to_string())?,
        )
    } else {
        filter
    })
}

impl LevelHandle {
    /// Applies a new `log.level` unless `RUST_LOG` pins the filter.
    pub(crate) fn set_level(&self, level: &str) -> Result<(), String> {
        if self.from_env {
            return Ok(());
        }
        let filter = level_filter(level, self.traces).map_err(|e| format!("log.level: {e}"))?;
        self.handle
            .reload(filter)
            .map_err(|e| format!("log.level: {e}"))
    }
}

/// Lines waiting for the writer thread at most; beyond, lines are dropped.
/// Access lines are at most ~2.5 KiB (their path is cut at 2 KiB), so a
/// stalled stdout holds at most ~20 MiB.
const QUEUED_LINES: usize = 8_192;

/// Where log lines go: the non-blocking writer, and what it dropped.
pub(crate) struct LogOutput {
    /// The writer every line goes through (one `write` call = one line).
    pub(crate) writer: NonBlocking,
    /// JSON lines (`log.format`).
    pub(crate) json: bool,
    /// Lines dropped because the writer thread fell behind.
    pub(crate) dropped: ErrorCounter,
    /// Flushes what is queued when dropped (at exit).
    pub(crate) _guard: WorkerGuard,
}

/// Stdout through a 64 KiB buffer (the writer thread flushes it whenever it
/// has written everything queued), or plain stdout if its descriptor cannot
/// be duplicated.
fn buffered_stdout() -> Box<dyn std::io::Write + Send> {
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::fs::File::from(fd),
        )),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// Installs the global subscriber; call once, after the config is loaded.
/// With a `tracer`, spans of the trace target go to it (and only there).
pub(crate) fn init(
    cfg: &LogConfig,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Result<(LevelHandle, LogOutput), String> {
    let traces = tracer.is_some();
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => (
            level_filter(&v, traces).map_err(|e| format!("RUST_LOG: {e}"))?,
            true,
        ),
        _ => (
            level_filter(&cfg.level, traces).map_err(|e| format!("log.level: {e}"))?,
            false,
        ),
    };
    let json = match cfg.format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stdout().is_terminal(),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(buffered_stdout());
    let dropped = writer.error_counter();
    let output = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(writer.clone())
            .boxed()
    } else {
        fmt::layer()
            .with_ansi(
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .with_writer(writer.clone())
            .boxed()
    };
    // Static per-layer filters (`Targets`, not closures): their interest is
    // decided once per callsite, so no span or event pays for them per call.
    let trace_target = orchestrator_http::trace_context::TARGET;
    let output = output.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_default(tracing::level_filters::LevelFilter::TRACE)
            .with_target(trace_target, tracing::level_filters::LevelFilter::OFF),
    );
    let spans = tracer.map(|t| {
        // No busy/idle timing, thread, code location or target attributes:
        // each costs time on every span (and every poll of an async one).
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(trace_target, tracing::level_filters::LevelFilter::TRACE),
            )
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .with(spans)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok((
        LevelHandle {
            handle,
            from_env,
            traces,
        },
        LogOutput {
            writer,
            json,
            dropped,
            _guard: guard,
        },
    ))
}

/// Writes one finished line (it must end with `\n`) in one `write` call, so
/// lines from different threads never interleave.
pub(crate) fn write_line(writer: &NonBlocking, line: &[u8]) {
    let mut w = writer.clone();
    let _ = w.write_all(line);
}
