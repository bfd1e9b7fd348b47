//! Wire-format decoders: bytes in, canonical samples and per-item rejections out.
//!
//! One module per format (and for Nightscout's reads `nightscout_query`, their query
//! language, `nightscout_doc`, the documents they answer, and `nightscout_site`, a site's
//! settings).
//! Decoders never do I/O and never read the clock; validation
//! against the catalog and "now" happens through [`vitals_core::Validator`].

pub mod apple_health;
pub mod batch;
pub mod empatica;
pub mod file_kind;
pub mod fit;
pub mod fitbit_takeout;
pub mod gadgetbridge;
pub mod health_auto_export;
pub mod line_protocol;
pub mod native;
pub mod nightscout;
pub mod nightscout_doc;
pub mod nightscout_query;
pub mod nightscout_site;
pub mod session_zip;

pub use batch::Batch;
pub use native::{DecodeError, Format};
