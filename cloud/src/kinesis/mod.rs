//! Amazon Kinesis Data Streams, through the official AWS SDK for Rust: the `kinesis` source
//! ([`source`]), the sink's writer ([`sink`]), and what both share — the connection (stream,
//! region, endpoint; credentials always from the standard AWS chain: environment variables,
//! then the shared profile files, then the instance's role), the stream's shards and how they
//! are spread over workers ([`ShardInfo`], [`owner`]).
//!
//! **Shards.** A shard plays the role of a Kafka partition: one worker reads it, in order, with
//! its own watermark. A shard with no parent in the stream's listing (one the stream started
//! with, or whose parents have aged out) is read by worker `N % workers`, `N` the number in its
//! id; a shard made by resharding is read by the worker of its (first) parent, after its
//! parents are read to their end — so records of one partition key stay in order across a
//! split or merge.
//!
//! ```
//! use weir_cloud::kinesis::{owner, ShardInfo};
//! let shard = |id: &str, parents: &[&str]| ShardInfo {
//!     id: id.into(),
//!     parents: parents.iter().map(|p| p.to_string()).collect(),
//!     closed: false,
//! };
//! let shards = vec![
//!     shard("shardId-000000000000", &[]),
//!     shard("shardId-000000000001", &[]),
//!     // Shard 1 split in two: both halves stay with shard 1's worker.
//!     shard("shardId-000000000002", &["shardId-000000000001"]),
//!     shard("shardId-000000000003", &["shardId-000000000001"]),
//! ];
//! assert_eq!(owner(&shards, "shardId-000000000000", 2), 0);
//! assert_eq!(owner(&shards, "shardId-000000000001", 2), 1);
//! assert_eq!(owner(&shards, "shardId-000000000003", 2), 1);
//! ```

use std::time::Duration;

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::Client;

pub mod fetcher;
pub mod positions;
pub mod sink;
pub mod source;

/// How long Weir waits for the service before it gives up on a request made before the run.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a stream is: its name, and the region and endpoint of the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The stream's name.
    pub stream: String,
    /// The AWS region (`None`: from the environment or profile, as the AWS CLI finds it).
    pub region: Option<String>,
    /// Another endpoint than AWS's, such as a local server's `http://127.0.0.1:4567`.
    pub endpoint: Option<String>,
}

impl Connection {
    /// A client for the service (credentials and, unless given, the region from the standard
    /// AWS chain). Must run inside a Tokio runtime.
    pub async fn client(&self) -> Result<Client, String> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &self.endpoint {
            loader = loader.endpoint_url(e);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(
                "no AWS region: set `region` in the pipeline, or AWS_REGION in the environment"
                    .into(),
            );
        }
        Ok(Client::new(&config))
    }

    /// Where the service is, for messages: the endpoint, or the region's.
    pub fn place(&self) -> String {
        match (&self.endpoint, &self.region) {
            (Some(e), _) => e.clone(),
            (None, Some(r)) => format!("Kinesis in {r}"),
            (None, None) => "Kinesis".into(),
        }
    }

    /// A message for a failed request: what failed, the SDK's whole error chain, and what to
    /// do.
    pub fn failure<E, R>(&self, what: &str, e: SdkError<E, R>) -> String
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        // The service's own code and message when it answered; else the whole chain (a
        // connection refused, a timeout).
        let text = match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            _ => DisplayErrorContext(&e).to_string(),
        };
        let hint = if text.contains("ResourceNotFound") {
            format!(
                "create the stream `{}` (aws kinesis create-stream), or fix `stream`",
                self.stream
            )
        } else if text.contains("dispatch failure")
            || text.contains("io error")
            || text.contains("Connection refused")
            || text.contains("timed out")
        {
            format!(
                "cannot reach {}: start the service, or fix `endpoint`/`region`",
                self.place()
            )
        } else if text.contains("credentials") || text.contains("Credentials") {
            "give AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a profile (AWS_PROFILE)".into()
        } else {
            "see the service's message above".into()
        };
        format!(
            "{what} of Kinesis stream `{}` failed: {text} ({hint})",
            self.stream
        )
    }
}

/// One shard of a stream, as the service lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// Its id, such as `shardId-000000000003`.
    pub id: String,
    /// The shards it was made from by a split (one) or a merge (two), first the parent.
    pub parents: Vec<String>,
    /// Whether it is closed (split or merged): it ends once read to its last record.
    pub closed: bool,
}

/// Every shard of the stream, open and closed (those still within its retention).
pub async fn list_shards(client: &Client, conn: &Connection) -> Result<Vec<ShardInfo>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = client.list_shards();
        req = match &token {
            Some(t) => req.next_token(t),
            None => req.stream_name(&conn.stream),
        };
        let page = req
            .send()
            .await
            .map_err(|e| conn.failure("listing the shards", e))?;
        for s in page.shards() {
            let mut parents = Vec::new();
            parents.extend(s.parent_shard_id().map(String::from));
            parents.extend(s.adjacent_parent_shard_id().map(String::from));
            out.push(ShardInfo {
                id: s.shard_id().to_string(),
                parents,
                closed: s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// The worker (of `peers`) that reads shard `id`: its first listed ancestor's number modulo
/// `peers` (see the [module documentation](self)).
pub fn owner(shards: &[ShardInfo], id: &str, peers: usize) -> usize {
    let mut at = id;
    // Follow first parents while they are listed (a bounded walk: lineages are short).
    for _ in 0..shards.len() {
        let parent = shards
            .iter()
            .find(|s| s.id == at)
            .and_then(|s| s.parents.first())
            .filter(|p| shards.iter().any(|s| &s.id == *p));
        match parent {
            Some(p) => at = p,
            None => break,
        }
    }
    let number = at
        .rsplit('-')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| {
            at.bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
        });
    (number % peers.max(1) as u64) as usize
}

/// Compares two sequence numbers of one shard (decimal numbers of up to 129 digits).
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Creates a stream of `shards` shards unless it exists, and waits until it is active. Returns
/// whether it created it.
pub async fn create_stream(
    client: &Client,
    conn: &Connection,
    shards: i32,
) -> Result<bool, String> {
    use aws_sdk_kinesis::types::StreamStatus;
    let created = match client
        .create_stream()
        .stream_name(&conn.stream)
        .shard_count(shards)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e)
            if DisplayErrorContext(&e)
                .to_string()
                .contains("ResourceInUse") =>
        {
            false
        }
        Err(e) => return Err(conn.failure("creating", e)),
    };
    loop {
        let d = client
            .describe_stream_summary()
            .stream_name(&conn.stream)
            .send()
            .await
            .map_err(|e| conn.failure("describing", e))?;
        if d.stream_description_summary()
            .is_some_and(|s| s.stream_status() == &StreamStatus::Active)
        {
            return Ok(created);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that the stream exists, so a run fails before it starts rather than at its first
/// request.
pub async fn check_stream(client: &Client, conn: &Connection) -> Result<(), String> {
    client
        .describe_stream_summary()
        .stream_name(&conn.stream)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| conn.failure("describing", e))
}
