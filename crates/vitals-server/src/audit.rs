//! Recording to the audit log from the server (the chain itself is `vitals_meta::audit`).
//!
//! Requests hand their entries to one auditor thread, which appends everything queued in
//! one transaction (group commit: one disk sync for all concurrent requests) and then
//! answers each request, so an entry is durable before its response leaves.

use std::sync::Arc;
use std::sync::mpsc;

use vitals_meta::{AuditEvent, MetaStore};

use crate::authz::Action;

/// Entries appended per transaction at most.
const MAX_BATCH: usize = 1024;

type Reply = tokio::sync::oneshot::Sender<Result<(), AuditError>>;

/// Why an entry could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the auditor stopped")]
    Stopped,
    #[error("the audit log cannot be written: the disk is full ({0})")]
    DiskFull(String),
    #[error("the audit log cannot be written: {0}")]
    Failed(String),
}

/// The auditor thread's queue.
pub struct Auditor {
    tx: mpsc::Sender<(AuditEvent, Reply)>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auditor")
    }
}

impl Auditor {
    /// Starts the thread; it ends when the auditor is dropped.
    pub fn start(meta: Arc<dyn MetaStore>) -> std::io::Result<Auditor> {
        let (tx, rx) = mpsc::channel::<(AuditEvent, Reply)>();
        std::thread::Builder::new().name("audit".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(x) => batch.push(x),
                        Err(_) => break,
                    }
                }
                let events: Vec<AuditEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
                let result = meta.append_audit_batch(&events).map(drop).map_err(|e| {
                    if e.is_disk_full() {
                        AuditError::DiskFull(e.to_string())
                    } else {
                        AuditError::Failed(e.to_string())
                    }
                });
                if let Err(e) = &result {
                    tracing::error!(error = %e, entries = events.len(), "appending to the audit log");
                }
                for (_, reply) in batch {
                    let _ = reply.send(result.clone());
                }
            }
        })?;
        Ok(Auditor { tx })
    }

    /// Appends an entry; resolves once it is durable.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.tx.send((event, reply)).map_err(|_| AuditError::Stopped)?;
        done.await.map_err(|_| AuditError::Stopped)?
    }

    /// Appends entries from a thread outside the async runtime (the campaign thread);
    /// returns once they are durable.
    pub fn record_all_blocking(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        let mut replies = Vec::with_capacity(events.len());
        for event in events {
            let (reply, done) = tokio::sync::oneshot::channel();
            self.tx.send((event, reply)).map_err(|_| AuditError::Stopped)?;
            replies.push(done);
        }
        for done in replies {
            done.blocking_recv().map_err(|_| AuditError::Stopped)??;
        }
        Ok(())
    }
}

/// The patient named in a request's response, for the audit log of routes that find the
/// patient from an id (an alert) or a body.
#[derive(Debug, Clone)]
pub struct AuditPatient(pub String);

/// Set on a response by a handler whose entry must say more than the route (the text of
/// an SQL query): the audit entry's target.
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// The audit log's name of an action.
pub fn audit_action(a: Action) -> &'static str {
    match a {
        Action::WriteSamples => "samples.write",
        Action::ListPatients => "patients.list",
        Action::ReadPatientData | Action::SyncNightscout => "patient.read",
        Action::CreatePatient => "patient.create",
        Action::ManageConnections => "connections.manage",
        Action::ReadIdentity => "identity.read",
        Action::WriteIdentity => "identity.update",
        Action::ExportPatient => "patient.export",
        Action::ErasePatient => "patient.erase",
        Action::ReadAlerts => "alerts.read",
        Action::ActOnAlerts => "alerts.act",
        Action::ReadRules => "rules.read",
        Action::Backtest => "rules.backtest",
        Action::ManageRules => "rules.change",
        Action::ReadCohorts => "cohorts.read",
        Action::ManageCohorts => "cohorts.change",
        Action::ManageNotifications => "notifications.manage",
        Action::ManageCampaigns => "campaigns.manage",
        Action::ManagePeople => "people.manage",
        Action::QuerySql => "sql.query",
        Action::ExportBulk => "fhir.export",
        Action::ReadAudit => "audit.read",
        Action::Operate => "operate",
        Action::Me => "me",
    }
}
