//! Weir's connectors to managed event streams: Amazon Kinesis Data Streams ([`kinesis`]).

#![forbid(missing_docs)]

pub mod kinesis;
