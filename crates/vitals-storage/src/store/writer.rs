//! The writer thread: drains queued writes, appends them to the WAL with one fdatasync
//! (group commit), inserts them into the buffer, completes each request, and feeds the
//! durable samples to the subscriber; freezes the buffer for a flush.

use super::*;

pub(super) fn note_patients(patients: &mut HashMap<PatientId, i64>, samples: &[Sample]) {
    let mut i = 0;
    while i < samples.len() {
        let p = &samples[i].patient;
        let mut max = samples[i].time_ms;
        let mut j = i + 1;
        while j < samples.len() && &samples[j].patient == p {
            max = max.max(samples[j].time_ms);
            j += 1;
        }
        match patients.get_mut(p) {
            Some(t) => *t = (*t).max(max),
            None => {
                patients.insert(p.clone(), max);
            }
        }
        i = j;
    }
}

pub(super) fn writer_loop(inner: &Inner, mut wal: Wal, rx: &Receiver<WriterMsg>) {
    let mut writes: Vec<(Vec<Sample>, Done)> = Vec::new();
    let mut controls: Vec<WriterMsg> = Vec::new();
    loop {
        let Ok(first) = rx.recv() else {
            close_wal(wal);
            return;
        };
        let mut total = 0usize;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                WriterMsg::Write { samples, done } => {
                    total += samples.len();
                    writes.push((samples, done));
                }
                other => controls.push(other),
            }
            // A control message ends the group so that it sees every write queued before it.
            if total < MAX_GROUP_SAMPLES && controls.is_empty() {
                next = rx.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            commit_group(inner, &mut wal, std::mem::take(&mut writes));
        }
        for c in controls.drain(..) {
            match c {
                WriterMsg::Write { .. } => {}
                WriterMsg::Freeze { reply } => {
                    let r = freeze(inner, &mut wal);
                    let _ = reply.send(r);
                }
                WriterMsg::RemoveWalThrough(seq) => {
                    if let Err(e) = wal.remove_through(seq) {
                        tracing::error!(error = %e, "deleting flushed WAL files");
                    }
                    inner.stats.wal_bytes.store(wal.size_bytes(), Ordering::Relaxed);
                }
                WriterMsg::Barrier { reply } => {
                    let _ = reply.send(());
                }
                WriterMsg::Stop => {
                    close_wal(wal);
                    return;
                }
            }
        }
    }
}

fn close_wal(wal: Wal) {
    if let Err(e) = wal.close() {
        tracing::error!(error = %e, "cutting a failed write off the WAL at close");
    }
}

/// Hands the committed samples of the subscribed metrics to the subscriber in batches of
/// at most [`FEED_BATCH_SAMPLES`], waiting while its channel is full: what waits for it is
/// then bounded by the channel's capacity times that (a backfill of millions of samples
/// once queued whole groups, gigabytes of them). Returns false if the subscriber is gone.
fn send_durable(mask: &[bool], tx: &SyncSender<DurableBatch>, committed: &[Vec<Sample>]) -> bool {
    let at = std::time::Instant::now();
    let mut batch = Vec::new();
    for s in committed.iter().flatten() {
        if !mask.get(usize::from(s.metric.0)).copied().unwrap_or(false) {
            continue;
        }
        batch.push(s.clone());
        if batch.len() == FEED_BATCH_SAMPLES
            && tx.send(DurableBatch { at, samples: std::mem::take(&mut batch) }).is_err()
        {
            return false;
        }
    }
    batch.is_empty() || tx.send(DurableBatch { at, samples: batch }).is_ok()
}

pub(super) fn metric_mask(catalog: &Catalog, metrics: &[MetricId]) -> Vec<bool> {
    let mut mask = vec![false; catalog.len()];
    for m in metrics {
        if let Some(b) = mask.get_mut(usize::from(m.0)) {
            *b = true;
        }
    }
    mask
}

pub(super) fn commit_group(inner: &Inner, wal: &mut Wal, writes: Vec<(Vec<Sample>, Done)>) {
    let n: usize = writes.iter().map(|w| w.0.len()).sum();
    let failed = inner.failed.lock().clone();
    if let Some(failure) = failed {
        // Each write after a failure first puts the WAL back as it was after the last good
        // one; if that fails too, the write is refused with the first failure.
        if let Err(e) = wal.recover() {
            tracing::debug!(error = %e, "the WAL could not recover yet");
            inner.in_flight.fetch_sub(n, Ordering::AcqRel);
            for (_, done) in writes {
                done(Err(failure.error()));
            }
            return;
        }
    }
    // One record per request, or several for a large one; a request is answered with the
    // seq of its last record.
    let per_record = inner.config.max_samples_per_record.max(1);
    let mut batches: Vec<&[Sample]> = Vec::with_capacity(writes.len());
    let mut last_record: Vec<u64> = Vec::with_capacity(writes.len());
    for (samples, _) in &writes {
        if samples.is_empty() {
            batches.push(samples);
        } else {
            batches.extend(samples.chunks(per_record));
        }
        last_record.push(batches.len() as u64 - 1);
    }
    match wal.append(&batches, inner.catalog) {
        Ok(first_seq) => {
            if let Some(f) = inner.failed.lock().take() {
                tracing::warn!(after = %f.reason, "the WAL takes writes again");
            }
            {
                let mut g = inner.read.write();
                for (samples, _) in &writes {
                    g.active.insert(samples);
                    note_patients(&mut g.patients, samples);
                }
                g.active.last_seq = first_seq + batches.len() as u64 - 1;
            }
            inner.buffered.fetch_add(n, Ordering::Relaxed);
            inner.in_flight.fetch_sub(n, Ordering::AcqRel);
            inner.stats.group_commits.fetch_add(1, Ordering::Relaxed);
            inner.stats.samples_written.fetch_add(n as u64, Ordering::Relaxed);
            let feed: Option<(Vec<bool>, SyncSender<DurableBatch>)> =
                inner.feed.read().as_ref().map(|f| (f.metrics.clone(), f.tx.clone()));
            let mut committed = Vec::with_capacity(if feed.is_some() { writes.len() } else { 0 });
            for ((samples, done), last) in writes.into_iter().zip(last_record) {
                done(Ok(first_seq + last));
                if feed.is_some() {
                    committed.push(samples);
                }
            }
            if let Some((mask, tx)) = feed
                && !send_durable(&mask, &tx, &committed)
            {
                // The subscriber is gone.
                *inner.feed.write() = None;
            }
            if wal.current_file_bytes() > inner.config.wal_max_file_bytes
                && let Err(e) = wal.rotate()
            {
                tracing::error!(error = %e, "rotating the WAL");
            }
            inner.stats.wal_bytes.store(wal.size_bytes(), Ordering::Relaxed);
            if inner.buffered.load(Ordering::Relaxed) >= inner.config.flush_max_samples {
                inner.wake_maintenance();
            }
        }
        Err(e) => {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written
            // since the last good fsync can be trusted (fsyncgate). The next write cuts the
            // file back to that point before it tries again (`Wal::recover`).
            let no_space = matches!(&e, WalError::Io { source, .. }
                if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded));
            let failure = Failure { reason: e.to_string(), no_space };
            let mut slot = inner.failed.lock();
            if slot.is_none() {
                tracing::error!(error = %failure.reason, "WAL write failed; writes are refused until one succeeds");
            }
            *slot = Some(failure.clone());
            drop(slot);
            inner.in_flight.fetch_sub(n, Ordering::AcqRel);
            for (_, done) in writes {
                done(Err(failure.error()));
            }
        }
    }
}

pub(super) fn freeze(inner: &Inner, wal: &mut Wal) -> Result<(), StoreError> {
    let mut g = inner.read.write();
    if g.active.is_empty() {
        return Ok(());
    }
    wal.rotate()?;
    let last = g.active.last_seq;
    let frozen = std::mem::take(&mut g.active);
    g.active.last_seq = last;
    g.frozen.push(Arc::new(frozen));
    Ok(())
}
