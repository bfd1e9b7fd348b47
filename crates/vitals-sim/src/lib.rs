//! Synthetic patients for Vitals: deterministic physiological models of glucose (CGM) and
//! wearable signals, with seizures, illnesses and low-glucose episodes labelled as ground
//! truth. Pure computation: callers decide where readings go (files, HTTP, MQTT).
//!
//! Every value is a pure function of (seed, patient, time), so the same seed gives the
//! same bytes and any time window is generated the same however the timeline was cut:
//! a backfill followed by live streaming equals one long backfill. The profiles, their
//! physiology and parameters are documented in `docs/simulator.md`.

mod cohort;
mod confounder;
mod encode;
mod model;
mod plan;
mod profile;
mod rng;
mod wire;

pub use cohort::{Member, demo as demo_cohort, uniform as uniform_cohort};
pub use encode::Encoding;
pub use model::{Device, Label, Options, Patient, Reading, SimEvent, Simulator, Which};
pub use profile::{Mix, Profile, ProfileError};
pub use wire::{Payload, health_auto_export, nightscout};
