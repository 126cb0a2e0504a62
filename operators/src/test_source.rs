//! The source of a pipeline test (`weir test`): records given in the test, in order, on
//! worker 0, decoded as the source it stands in for would decode them, with the watermark
//! advances the test asks for between them. Its input ends after its last item.
//!
//! Each [`TestItem::Watermark`] ends the batch being read, so the source's capability (its
//! watermark) moves there before the next record is read: what the test says is late, is.
//!
//! ```
//! use std::sync::Arc;
//! use timely::dataflow::operators::{Capture, capture::Event};
//! use weir_operators::{decode::*, flow::SourceEnv, schema::*, time::TimeFormat, value::*};
//! use weir_operators::{clock::RunClock, control::RunControl, epochs::Mode};
//! use weir_operators::test_source::{test_source, TestItem, TestInput};
//! use weir_operators::metrics::ComponentMetrics;
//!
//! let schema = Schema::new(vec![Field::new("ts", FieldType::Timestamp), Field::new("n", FieldType::I64)]).with_time("ts");
//! let decode = DecodeSpec::new("s", schema, TimeFormat::EpochMs, false, OnError::DeadLetter);
//! let input = Arc::new(TestInput {
//!     decode: Arc::new(decode),
//!     items: vec![
//!         TestItem::Record(r#"{"ts": 1000, "n": 1}"#.into()),
//!         TestItem::Watermark(5_000_000),
//!         TestItem::Record(r#"{"ts": 2000, "n": 2}"#.into()),
//!     ],
//! });
//! let (tx, rx) = std::sync::mpsc::channel();
//! timely::execute_directly(move |worker| {
//!     let env = SourceEnv::new(Mode::Continuous, RunClock::now(), RunControl::default());
//!     worker.dataflow::<u64, _, _>(|scope| {
//!         let (records, _dead) = test_source(scope, "s", input, env, Arc::new(ComponentMetrics::default()));
//!         records.capture_into(tx);
//!     });
//! });
//! // The first record goes at the source's first time; the second after the watermark moved
//! // to 5 s (µs).
//! let times: Vec<u64> = rx
//!     .iter()
//!     .filter_map(|e| match e {
//!         Event::Messages(t, d) if !d.is_empty() => Some(t.elements()[0]),
//!         _ => None,
//!     })
//!     .collect();
//! assert_eq!(times, [0, 5_000_000]);
//! ```

use std::sync::Arc;

use timely::dataflow::Scope;

use crate::decode::DecodeSpec;
use crate::flow::SourceEnv;
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Output, Progress};
use crate::value::Micros;
use crate::{Batches, Time};

/// One item of a test's input.
#[derive(Clone, Debug, PartialEq)]
pub enum TestItem {
    /// A record, as the JSON object the source would read.
    Record(String),
    /// The source's watermark moves to at least this event time (µs).
    Watermark(Micros),
}

/// A test's input for one source.
#[derive(Debug)]
pub struct TestInput {
    /// How the source decodes.
    pub decode: Arc<DecodeSpec>,
    /// The items, in order.
    pub items: Vec<TestItem>,
}

/// Builds the test source on this worker: returns (records, dead letters).
pub fn test_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    input: Arc<TestInput>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Batches<'s>, Batches<'s>) {
    let reads = scope.index() == 0;
    let out = Output::of(&input.decode);
    let place = format!("test input of {name}");
    let wake = scope;
    reading_source(scope, name, out, env, metrics, move |address| {
        let activator = wake.activator_for(address);
        let mut next = 0usize;
        move |batch: &mut Batch| {
            if !reads {
                return Progress::Done;
            }
            while let Some(item) = input.items.get(next) {
                next += 1;
                match item {
                    TestItem::Record(text) => {
                        batch.json_line(&input.decode, text.as_bytes(), &place, next as u64);
                    }
                    TestItem::Watermark(t) => {
                        batch.idle_floor = batch.idle_floor.max(*t);
                        // End the batch here, so the watermark moves before the next record;
                        // and be read again at once.
                        activator.activate();
                        return Progress::Waiting;
                    }
                }
            }
            Progress::Done
        }
    })
}
