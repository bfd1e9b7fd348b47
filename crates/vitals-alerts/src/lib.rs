//! Alerts and what is decided about them, as pure functions: no I/O, no clock (time comes in
//! as a parameter), no threads.
//!
//! The rule engine (`vitals-rules`) says that an episode opened, resolved, reopened or was
//! retracted. This crate turns those [`Change`](vitals_rules::live::Change)s, given the
//! alerts as they stand, into new alert versions and the notices they cause:
//!
//! - [`alert`]: an alert and its lifecycle ([`alert::plan`]: an engine change -> an alert
//!   version);
//! - [`decision`]: suppression by higher-severity alerts, routing to subscriptions, the
//!   all-clear, reminders and escalation ([`decision::on_changes`], [`decision::on_tick`],
//!   [`decision::reconcile`]);
//! - [`notice`]: contacts, subscriptions, quiet hours, notice ids and texts;
//! - [`delivery`]: the [`Transport`](delivery::Transport) trait every channel implements and
//!   the retry policy of the outbox;
//! - [`config`]: the `[notify]` section and its checks;
//! - [`campaign`]: messages to the opted-in members of a cohort on a schedule, and their
//!   unsubscribe links.
//!
//! The server keeps the alerts and the outbox durable and runs the transports.

pub mod alert;
pub mod campaign;
pub mod config;
pub mod decision;
pub mod delivery;
pub mod notice;

pub use alert::{Alert, AlertState, RuleInfo, Transition, alert_id};
pub use config::NotifyConfig;
pub use decision::{Alerts, Decision, Policy};
pub use delivery::{SendError, Transport};
pub use notice::{Channel, Contact, Notice, NoticeKind, NoticeState, Subscription};
