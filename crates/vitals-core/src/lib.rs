//! Canonical data of Vitals: samples, the metric catalog with units, identifiers and time.
//!
//! This crate does no I/O and never reads the clock: "now" always comes in as a parameter.

pub mod catalog;
pub mod event;
pub mod id;
pub mod sample;
pub mod source;
pub mod time;

pub use catalog::{Aggregation, Catalog, Metric, MetricId};
pub use event::Event;
pub use id::{DeviceId, IdError, PatientId, SampleId};
pub use sample::{MAX_MESSAGE_CHARS, RawSample, RawTime, RejectCode, Rejection, Sample, Validator};
pub use source::Source;
pub use time::{Clock, DurationMs, ManualClock, SystemClock};
