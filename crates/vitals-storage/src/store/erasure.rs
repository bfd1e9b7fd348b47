//! Erasure: every sample of a patient leaves the buffer, the WAL and every lake partition.

use super::*;

impl Inner {
    pub(super) fn erase_patient(&self, patient: &PatientId, tx: &SyncSender<WriterMsg>) -> Result<Erased, StoreError> {
        let mut erased = Erased::default();
        // A few rounds in case the patient's samples keep arriving while we flush.
        for _ in 0..3 {
            // Flush: the buffer's samples go to segments and the WAL files holding them
            // (closed at the freeze) are deleted.
            self.flush(tx)?;
            let (reply, rx) = mpsc::sync_channel(1);
            tx.send(WriterMsg::Barrier { reply }).map_err(|_| StoreError::Closed)?;
            rx.recv().map_err(|_| StoreError::Closed)?;
            let _m = self.maintenance.lock();
            let doomed: Vec<Arc<SegmentMeta>> = {
                let g = self.read.read();
                // An archive segment is listed under each of its days: once here.
                let by_id: BTreeMap<u64, Arc<SegmentMeta>> = g
                    .index
                    .series
                    .iter()
                    .filter(|(k, _)| &k.0 == patient)
                    .flat_map(|(_, days)| days.values().flatten().map(|s| (s.id, Arc::clone(s))))
                    .collect();
                by_id.into_values().collect()
            };
            let mut manifest = self.manifest.lock();
            if !doomed.is_empty() {
                manifest.commit(Edit { remove: doomed.iter().map(|d| d.id).collect(), ..Edit::default() })?;
            }
            manifest.snapshot()?;
            drop(manifest);
            {
                let mut g = self.read.write();
                for s in &doomed {
                    if let Some(metric) = self.catalog.id(&s.metric) {
                        g.index.remove(&(patient.clone(), metric), s);
                    }
                }
            }
            for s in &doomed {
                self.delete_files(s)?;
                erased.segments += 1;
                erased.rows += s.rows;
            }
            self.remove_patient_dirs(patient)?;
            let mut g = self.read.write();
            let still = g.active.series_keys().any(|(p, _)| p == patient) || !g.frozen.is_empty();
            if !still {
                g.patients.remove(patient);
                drop(g);
                drop(_m);
                self.erase_remote(patient)?;
                return Ok(erased);
            }
        }
        Err(StoreError::Failed(format!("samples of {patient} kept arriving during its erasure; stop its senders")))
    }

    /// Deletes the patient's objects from the remote lake now, rather than leaving them to
    /// the tiering thread: those of the segments just removed, then any other object under
    /// a `patient=<id>` partition (an upload cut short by a crash, say).
    fn erase_remote(&self, patient: &PatientId) -> Result<(), StoreError> {
        let Some(remote) = &self.config.remote else { return Ok(()) };
        let wanted = format!("/patient={patient}/");
        if let Some(shared) = &self.config.shared {
            return self.erase_shared(shared, remote, patient, &wanted);
        }
        let keys: Vec<String> = {
            let mut d = self.doomed.lock();
            let (mine, rest) = std::mem::take(&mut *d).into_iter().partition(|k: &String| k.contains(&wanted));
            *d = rest;
            mine
        };
        let unfinished = |e: &dyn std::fmt::Display| {
            StoreError::Failed(format!(
                "the patient's samples are erased here, but the remote lake refused deleting their objects ({e}); \
                 retried by the tiering thread and its sweep, or run the erasure again"
            ))
        };
        for (i, k) in keys.iter().enumerate() {
            if let Err(e) = remote.delete(k) {
                self.doomed.lock().extend(keys[i..].iter().cloned());
                return Err(unfinished(&e));
            }
        }
        self.sweep_remote(Duration::ZERO, Some(patient)).map_err(|e| unfinished(&e))?;
        Ok(())
    }

    /// Cluster mode: the patient leaves the shared lake's catalog, and every object of
    /// theirs is deleted now, whoever wrote it (every node erases the patient: the erasure
    /// came through the log).
    fn erase_shared(
        &self,
        shared: &Arc<dyn SharedLake>,
        remote: &Arc<dyn Remote>,
        patient: &PatientId,
        wanted: &str,
    ) -> Result<(), StoreError> {
        let unfinished = |e: &dyn std::fmt::Display| {
            StoreError::Failed(format!(
                "the patient's samples are erased here, but the shared lake did not let go of their objects ({e}); run the erasure again"
            ))
        };
        shared.remove_patient(patient.as_str()).map_err(|e| unfinished(&e))?;
        let keys: Vec<String> = remote
            .list()
            .map_err(|e| unfinished(&e))?
            .into_iter()
            .filter(|o| o.key.contains(wanted) && o.key.rsplit('/').next().is_some_and(super::tiering::is_segment_name))
            .map(|o| o.key)
            .collect();
        for k in &keys {
            remote.delete(k).map_err(|e| unfinished(&e))?;
        }
        shared.forget(&keys).map_err(|e| unfinished(&e))?;
        self.stats.remote_deletes.fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the now-empty directories above `path`, up to the lake (`remove_dir` fails on
    /// a directory that is not empty, which ends the walk).
    pub(super) fn remove_empty_parents(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.lake || self.config.fs.remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// Removes `patient=<id>` partition directories (empty after an erasure) and the empty
    /// directories above them.
    pub(super) fn remove_patient_dirs(&self, patient: &PatientId) -> Result<(), StoreError> {
        let wanted = format!("patient={patient}");
        let mut stack = vec![self.lake.clone()];
        let mut found = Vec::new();
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let path = e.path();
                if !path.is_dir() {
                    continue;
                }
                if e.file_name().to_string_lossy() == wanted {
                    found.push(path);
                } else {
                    stack.push(path);
                }
            }
        }
        for dir in found {
            crate::fs::remove_dir_all(self.config.fs.as_ref(), &dir).map_err(io(&dir))?;
            self.remove_empty_parents(&dir);
        }
        self.config.fs.sync_dir(&self.lake).map_err(io(&self.lake))?;
        Ok(())
    }
}
