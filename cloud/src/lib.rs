//! Weir's connectors to managed event streams: Amazon Kinesis Data Streams ([`kinesis`]) and
//! Google Cloud Pub/Sub ([`pubsub`]).

#![forbid(missing_docs)]

pub mod kinesis;
pub mod pubsub;
