//! Readiness as explicit state: ready once config is loaded and listeners are
//! bound, while the required backends answer, and never again once shutdown starts.

use std::sync::atomic::{AtomicBool, Ordering};

/// The latch behind `/readyz`.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    listeners_bound: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub(crate) fn set_listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::SeqCst);
    }

    pub(crate) fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Why the process is not ready, from its own state (backends are checked by the caller).
    pub(crate) fn blocker(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::SeqCst) {
            Some("shutting down")
        } else if !self.listeners_bound.load(Ordering::SeqCst) {
            Some("listeners not bound yet")
        } else {
            None
        }
    }
}
