//! The Vitals server and command line: configuration, the HTTP API, commands and their
//! wiring. The `vitals` binary is a thin `main` over [`commands::run`]; integration tests
//! use the same router in-process.

pub mod admin;
pub mod alerting;
pub mod alerts;
pub mod alerts_api;
pub mod api_error;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bench;
pub mod cli;
pub mod client;
pub mod cohorts;
pub mod cohorts_api;
pub mod commands;
pub mod config;
pub mod dead_letter_api;
pub mod demo;
pub mod file_drop;
pub mod glucose;
pub mod health_auto_export_api;
pub mod line_protocol_api;
pub mod mqtt;
pub mod mqtt_listener;
pub mod nightscout_api;
pub mod notifications_api;
pub mod notifier;
pub mod patients_api;
pub mod people;
pub mod people_api;
pub mod request_body;
pub mod rights;
pub mod rules;
pub mod rules_api;
pub mod samples_api;
pub mod series_api;
pub mod server;
pub mod session_api;
pub mod simulate;
pub mod telemetry;
pub mod tls;
pub mod tokens_api;
pub mod web;
