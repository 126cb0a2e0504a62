//! Weir's connectors to managed event streams: Amazon Kinesis Data Streams ([`kinesis`]) and
//! Google Cloud Pub/Sub ([`pubsub`]).

#![forbid(missing_docs)]

pub mod kinesis;
pub mod pubsub;

use std::future::Future;
use std::time::Duration;

/// Runs `f` to completion (a request made before or outside the dataflow) on a Tokio runtime of this thread's own, giving up after `timeout`.
pub fn block_on<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let rt = runtime()?;
    rt.block_on(async {
        tokio::time::timeout(timeout, f)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())))
    })
}

/// A single-threaded Tokio runtime for the clients of both services.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an I/O runtime: {e}"))
}
