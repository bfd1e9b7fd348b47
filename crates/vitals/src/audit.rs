//! Recording to the audit log from the server (the chain itself is `vitals_meta::audit`).
//!
//! Requests hand their entries to one auditor thread, which appends everything queued in
//! one transaction (group commit: one disk sync for all concurrent requests) and then
//! answers each request, so an entry is durable before its response leaves.

use std::sync::Arc;
use std::sync::mpsc;

use vitals_meta::{AuditEvent, MetaStore};

/// Entries appended per transaction at most.
const MAX_BATCH: usize = 1024;

type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;

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
                let result = meta.append_audit_batch(&events).map(drop).map_err(|e| e.to_string());
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
    pub async fn record(&self, event: AuditEvent) -> anyhow::Result<()> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.tx.send((event, reply)).map_err(|_| anyhow::anyhow!("the auditor stopped"))?;
        done.await.map_err(|_| anyhow::anyhow!("the auditor stopped"))?.map_err(|e| anyhow::anyhow!(e))
    }
}

/// Appends an entry durably through the application's auditor.
pub async fn record(app: &crate::server::AppState, event: AuditEvent) -> anyhow::Result<()> {
    app.auditor.record(event).await
}
