//! The Vitals server: the HTTP API, every way samples come in, alerting and notifications,
//! people and security, and the runtime that runs them over the stores of a data directory.
//! The `vitals` binary wires its commands to this library; integration tests use the same
//! router in-process.
//!
//! Rooms: [`app`] (the shared state) and [`runtime`] (start and stop every task);
//! [`api`] (routes and handlers); [`source`] (the ways in and the ingest pipeline);
//! [`alerting`] (the live engine's thread), [`notifier`] (delivery of the outbox) and
//! [`campaigns`] (the campaign thread);
//! [`auth`], [`authz`], [`audit`] (who, what they may do, what they did); the small stores
//! ([`alert_store`], [`rule_store`], [`cohort_store`], [`campaign_store`]) and [`stores`] (opening them all);
//! [`config`], [`telemetry`], [`tls`], [`web`] (the dashboard's files).

pub mod alert_store;
pub mod alerting;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod campaign_store;
pub(crate) mod campaigns;
pub mod cluster;
pub mod cohort_store;
pub mod config;
pub mod connection_store;
pub mod connections;
pub mod devices;
pub mod fhir;
pub mod fhir_export;
pub(crate) mod nights;
pub(crate) mod notifier;
pub mod people;
pub mod pg;
pub mod rights;
pub mod rule_store;
pub mod runtime;
pub mod shutdown;
pub mod source;
pub mod sql;
pub mod store_log;
pub mod stores;
pub mod telemetry;
pub mod tls;
pub(crate) mod web;
