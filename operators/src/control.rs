//! Run control shared by every worker of a process: the stop request (Ctrl-C, a closed stdout)
//! and the first fatal error (an `on_error = "fail"` record, a failed write).
//!
//! Sources poll [`RunControl::stopped`] and release their capabilities when it is set, so the
//! dataflow drains and finishes cleanly instead of being torn down.
//!
//! ```
//! use weir_operators::control::RunControl;
//!
//! let ctl = RunControl::default();
//! assert!(!ctl.stopped());
//! ctl.fail("readings.jsonl:3: missing timestamp".into());
//! assert!(ctl.stopped());
//! assert_eq!(ctl.failure().as_deref(), Some("readings.jsonl:3: missing timestamp"));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Shared stop flag and failure slot.
#[derive(Clone, Default)]
pub struct RunControl {
    stop: Arc<AtomicBool>,
    output_closed: Arc<AtomicBool>,
    time_up: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
}

impl RunControl {
    /// Asks every source to stop; the run then drains and ends normally.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the run because its standard output was closed (`weir run ... | head`): a normal
    /// end, not an interruption.
    pub fn close_output(&self) {
        self.output_closed.store(true, Ordering::Relaxed);
        self.stop();
    }

    /// Whether the run stopped because its standard output was closed.
    pub fn output_closed(&self) -> bool {
        self.output_closed.load(Ordering::Relaxed)
    }

    /// Stops the run because its planned duration is over: a normal end.
    pub fn end_of_duration(&self) {
        self.time_up.store(true, Ordering::Relaxed);
        self.stop();
    }

    /// Whether the run stopped because its planned duration was over.
    pub fn time_up(&self) -> bool {
        self.time_up.load(Ordering::Relaxed)
    }

    /// Whether a stop was asked for.
    #[inline]
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Records a fatal error (the first one wins) and stops the run.
    pub fn fail(&self, message: String) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(message);
        }
        self.stop();
    }

    /// The fatal error, if the run failed.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|s| s.clone())
    }

    /// The flag itself, for a signal handler.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }
}
