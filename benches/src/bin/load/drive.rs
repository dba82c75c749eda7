//! The load itself: N tasks, each with its own keep-alive connection (or
//! browser), repeating one operation until a deadline and recording each
//! latency in an HDR histogram.
//!
//! Closed loop by default (each task sends its next request when the last
//! one is answered: the maximum throughput). With a rate, each task follows
//! a fixed schedule and latency counts from the time a request *should* have
//! left, so a stalled server is not hidden by the client waiting for it
//! (no coordinated omission).

use std::future::Future;
use std::time::{Duration, Instant};

use benches::Error;
use hdrhistogram::Histogram;

/// An operation that takes longer than this counts as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// What one run of one target measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Latencies of successful operations, in microseconds.
    pub(crate) hist: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// Measured time (without warm-up), summed over rounds.
    pub(crate) elapsed: Duration,
    /// The first error seen, to print when there are errors.
    pub(crate) first_error: Option<String>,
}

impl Outcome {
    pub(crate) fn new() -> Self {
        Self {
            // 1 µs .. 60 s at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| {
                Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits is valid"))
            }),
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            first_error: None,
        }
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        let _ = self.hist.add(&other.hist);
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    pub(crate) fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// A percentile in milliseconds.
    pub(crate) fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// How the tasks pace themselves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// As fast as the target answers.
    Closed,
    /// This many operations per second over all tasks together.
    Rate(f64),
}

/// Runs `op` from `tasks` tasks for `warmup` (not recorded) and then
/// `duration`. `init` makes each task's state (a connection, a browser);
/// `op` takes the state and gives it back with the result, so it can
/// reconnect after an error.
pub(crate) async fn run<S, I, IF, O, OF>(
    tasks: usize,
    warmup: Duration,
    duration: Duration,
    pace: Pace,
    init: I,
    op: O,
) -> Outcome
where
    S: Send + 'static,
    I: Fn() -> IF + Send + Sync + Clone + 'static,
    IF: Future<Output = Result<S, Error>> + Send + 'static,
    O: Fn(S) -> OF + Send + Sync + Clone + 'static,
    OF: Future<Output = (S, Result<(), Error>)> + Send + 'static,
{
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..tasks {
        let init = init.clone();
        let op = op.clone();
        set.spawn(async move {
            let mut out = Outcome::new();
            let mut state = match init().await {
                Ok(s) => s,
                Err(e) => {
                    out.errors += 1;
                    out.first_error = Some(format!("setup: {e}"));
                    return out;
                }
            };
            // Spread the tasks' schedules evenly over one interval.
            let interval = match pace {
                Pace::Closed => None,
                Pace::Rate(r) => Some(Duration::from_secs_f64(tasks as f64 / r.max(1e-3))),
            };
            let mut next =
                start + interval.map_or(Duration::ZERO, |iv| iv * i as u32 / tasks as u32);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let intended = match interval {
                    Some(iv) => {
                        if next > now {
                            // Pacing to a schedule (open loop), not synchronisation.
                            tokio::time::sleep_until(next.into()).await;
                        }
                        let t = next;
                        next += iv;
                        t
                    }
                    None => now,
                };
                if intended >= end {
                    break;
                }
                let result = match tokio::time::timeout(OP_TIMEOUT, op(state)).await {
                    Ok((s, result)) => {
                        state = s;
                        result
                    }
                    Err(_) => {
                        // The state went with the abandoned operation: start over.
                        match init().await {
                            Ok(s) => state = s,
                            Err(_) => {
                                out.errors += 1;
                                break;
                            }
                        }
                        Err(format!("no answer within {OP_TIMEOUT:?}").into())
                    }
                };
                let done = Instant::now();
                if intended < measure_from || done > end {
                    continue;
                }
                match result {
                    Ok(()) => {
                        out.ok += 1;
                        let us = done.duration_since(intended).as_micros();
                        let _ = out
                            .hist
                            .record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
                    }
                    Err(e) => {
                        out.errors += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(e.to_string());
                        }
                    }
                }
            }
            out
        });
    }
    let mut total = Outcome::new();
    while let Some(done) = set.join_next().await {
        if let Ok(out) = done {
            let mut out = out;
            out.elapsed = Duration::ZERO;
            total.merge(&out);
        }
    }
    total.elapsed = duration;
    total
}
