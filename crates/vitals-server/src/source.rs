//! Every way samples come in, and the one pipeline they all go through.
//!
//! - [`pipeline`]: validator, decoding, dead letters, counting, submitting, durability;
//!   [`wire_format`]: the formats and decoding any of them; [`dead_letter`]: what is kept
//!   of refused input;
//! - HTTP: [`samples_api`] (native JSON/NDJSON/CSV), [`line_protocol_api`] (InfluxDB
//!   `/write`), [`nightscout_api`] (CGM uploaders and followers, API v1) and [`nightscout_v3`] (API v3),
//!   [`health_auto_export_api`];
//! - MQTT: [`mqtt`] (client of an external broker), [`mqtt_listener`] (devices connect to
//!   Vitals over TLS);
//! - files: [`file_drop`] (the watched staging directory) over [`file`] (one file or folder
//!   by its content), which `vitals ingest` uses too.
//!
//! A way in only translates its request into a [`pipeline::Submission`] and the
//! [`pipeline::Report`] into its protocol's answer.

pub(crate) mod dead_letter;
pub mod file;
pub(crate) mod file_drop;
pub(crate) mod health_auto_export_api;
pub(crate) mod kafka;
pub(crate) mod line_protocol_api;
pub mod mqtt;
pub(crate) mod mqtt_listener;
pub(crate) mod nightscout_api;
pub(crate) mod nightscout_v3;
pub mod pipeline;
pub(crate) mod request_body;
pub(crate) mod samples_api;
pub mod sink;
pub(crate) mod upload_api;
pub(crate) mod vendor_file;
pub mod wire_format;
