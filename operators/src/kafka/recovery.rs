//! Recovery points: what a Kafka source commits beside each offset ([`CommitPoint`]), when a
//! record's outputs are all written ([`Replay`]), and the group's recovery topic
//! ([`RecoveryLog`]).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{create_topic, Messages, BROKER_TIMEOUT};
use crate::value::Micros;
use crate::Time;

/// Where a consumer group left off in one partition, and what Weir stored beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPoint {
    /// The partition's largest event time before the committed offset.
    pub max_seen: Micros,
    /// The partition's idle floor then.
    pub idle_floor: Micros,
    /// The frontier the sinks had passed: every output at a time below it was written.
    pub frontier: Time,
    /// The next offset to read when the commit was made: records from there on were read
    /// after it, and are never taken for written on a restart.
    pub read_to: i64,
    /// The partition's idle floor when the commit was made: at least the floor any record
    /// read before it saw.
    pub idle_now: Micros,
}

impl fmt::Display for CommitPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "weir:2 max_seen={} idle_floor={} frontier={} read_to={} idle_now={}",
            self.max_seen, self.idle_floor, self.frontier, self.read_to, self.idle_now
        )
    }
}

impl CommitPoint {
    /// Reads a recovery point written by [`Display`](fmt::Display) (`None` for anything
    /// else).
    pub fn parse(text: &str) -> Option<CommitPoint> {
        let mut parts = text.strip_prefix("weir:2 ")?.split(' ');
        let mut field = |name: &str| -> Option<i128> {
            parts
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        Some(CommitPoint {
            max_seen: field("max_seen")?.try_into().ok()?,
            idle_floor: field("idle_floor")?.try_into().ok()?,
            frontier: field("frontier")?.try_into().ok()?,
            read_to: field("read_to")?.try_into().ok()?,
            idle_now: field("idle_now")?.try_into().ok()?,
        })
    }
}

/// When a record read from a source has had all its outputs: what the planner knows of the
/// operators between the source and the sinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Every path to a sink goes through filters, maps and at most one tumbling window (size,
    /// offset, in µs) whose late records are not applied as updates. A record's outputs are
    /// then at times at most its partition's watermark (itself, its dead letter, a late
    /// record's routing) or its windows' last microsecond.
    Windows(Vec<(Micros, Micros)>),
    /// Something on the way keeps state whose end Weir cannot bound per record (sessions,
    /// sliding windows, joins, late updates): records are safe only once their source ends.
    Unknown,
}

impl Replay {
    /// The latest time of an output of a record with event time `ts` (if it has one), read
    /// when its partition's watermark was `watermark`; `None` when unknown.
    pub fn done_time(&self, ts: Option<Micros>, watermark: Micros) -> Option<Time> {
        let Replay::Windows(windows) = self else {
            return None;
        };
        let mut t = watermark.max(0) as Time;
        if let Some(ts) = ts {
            for &(size, offset) in windows {
                let end = offset + (ts - offset).div_euclid(size) * size + size;
                t = t.max(end.max(1) as Time - 1);
            }
        }
        Some(t)
    }
}

/// The recovery topic of a consumer group: one message per commit, each line of it a
/// partition, the offset committed and its [`CommitPoint`].
pub struct RecoveryLog {
    messages: Messages,
}

impl RecoveryLog {
    /// The topic of `group`.
    pub fn topic(group: &str) -> String {
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(200)
            .collect();
        format!("{safe}.weir-recovery")
    }

    /// Opens the log of the group in `config` (`group.id`), creating its topic if needed.
    pub fn open(config: &ClientConfig) -> Result<RecoveryLog, String> {
        let topic = Self::topic(config.get("group.id").unwrap_or("weir"));
        create_topic(config, &topic, 1)?;
        Ok(RecoveryLog {
            messages: Messages::new(config, &topic)?,
        })
    }

    /// Writes the recovery points of offsets about to be committed, and waits until the
    /// broker has them.
    pub fn write(&self, points: &[(String, i32, i64, CommitPoint)]) -> Result<(), String> {
        let text: String = points
            .iter()
            .map(|(t, p, o, point)| format!("{t} {p} {o} {point}\n"))
            .collect();
        self.messages.send(None, text.as_bytes(), None)?;
        self.messages.flush()
    }

    /// Every recovery point of the group in `config`, by topic, partition and offset.
    pub fn read(config: &ClientConfig) -> Result<HashMap<(String, i32, i64), CommitPoint>, String> {
        let topic = Self::topic(config.get("group.id").unwrap_or("weir"));
        let mut points = HashMap::new();
        let mut c = config.clone();
        c.set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().map_err(|e| {
            format!("cannot create a Kafka consumer: {e} (check `librdkafka_options`)")
        })?;
        let (low, high) = match consumer.fetch_watermarks(&topic, 0, BROKER_TIMEOUT) {
            Ok(w) => w,
            // No recovery topic: nothing was committed by Weir.
            Err(_) => return Ok(points),
        };
        if high <= low {
            return Ok(points);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(low))
            .map_err(|e| e.to_string())?;
        consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot read {topic}: {e}"))?;
        let deadline = std::time::Instant::now() + BROKER_TIMEOUT * 3;
        let mut next = low;
        while next < high {
            if std::time::Instant::now() > deadline {
                return Err(format!("cannot read the recovery topic `{topic}` in time"));
            }
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.map_err(|e| format!("cannot read the recovery topic `{topic}`: {e}"))?;
            next = m.offset() + 1;
            let text = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap_or("");
            for line in text.lines() {
                let mut parts = line.splitn(4, ' ');
                let (Some(t), Some(p), Some(o), Some(point)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if let (Ok(p), Ok(o), Some(point)) =
                    (p.parse(), o.parse(), CommitPoint::parse(point))
                {
                    points.insert((t.to_string(), p, o), point);
                }
            }
        }
        Ok(points)
    }
}
