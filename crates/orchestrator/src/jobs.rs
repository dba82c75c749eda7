//! The worker of the provider's back-channel logout queue: every replica
//! claims the jobs that are due (new deliveries, retries, session expiries,
//! jobs of a replica that died) and runs them off the request path, with a
//! bounded number in flight. Whatever provider the config currently builds
//! runs them, so a reload never stops the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::app::App;

/// How often the queue is asked when nothing was queued in this process.
const ROUND: Duration = Duration::from_secs(1);
/// Most jobs running at once (each is one HTTP POST with a 5 s timeout).
const MAX_IN_FLIGHT: usize = 64;

/// Runs until the task is aborted (after the drain, at shutdown).
pub(crate) async fn run(app: Arc<App>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        tokio::select! {
            () = orchestrator_oidc::jobs_queued() => {}
            () = tokio::time::sleep(ROUND) => {}
        }
        // A full batch means more may be due: ask again at once.
        loop {
            let runtime = app.runtime();
            let Some(provider) = runtime.provider.as_ref() else {
                break;
            };
            let jobs = provider.claim_due_jobs().await;
            let full = jobs.len() >= orchestrator_oidc::JOB_BATCH;
            for job in jobs {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    if let Some(provider) = runtime.provider.as_ref() {
                        provider.run_job(job).await;
                    }
                    drop(permit);
                });
            }
            if !full {
                break;
            }
        }
    }
}
