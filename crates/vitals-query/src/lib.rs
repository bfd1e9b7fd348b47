//! Range and bucketed aggregate queries over the store.
//!
//! Raw queries merge every device's points; bucketed queries fold raw points and, for
//! whole days when the bucket width is a multiple of an hour, the segments' hourly rollups.
//! [`glucose`] summarises glucose readings (consensus metrics, daily profile, moving
//! average) as pure functions.

pub mod fhir;
pub mod glucose;
pub mod series_query;

pub use series_query::{
    Agg, Bucket, MAX_RAW_POINTS, MAX_SCANNED_POINTS, QueryError, QueryResult, RawPoint, SeriesQuery, run,
};
