//! Integration tests of the `vitals` server and binary.

#![allow(unreachable_pub)] // reason: helpers of a test binary are shared between its modules

mod admin;
mod alerts;
mod api;
mod authz;
mod baselines;
mod bucket;
mod campaigns;
mod cli;
mod cluster;
mod connections;
mod crash;
mod dashboard;
mod dead_letters;
mod devices;
mod fhir;
mod fhir_export;
mod file_drop;
mod full_disk;
mod harness;
mod health_auto_export;
mod kafka;
mod lake;
mod lake_property;
mod limits;
mod line_protocol;
mod mqtt;
mod nightscout;
mod notify;
mod people;
mod pg;
mod pg_catalog;
mod rules;
mod schemathesis;
mod seizure_diary;
mod simulate;
mod sql;
mod tls;
mod vendor_files;
mod ways_in;
