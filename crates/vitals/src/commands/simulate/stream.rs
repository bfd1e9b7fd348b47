//! Sending the cohort's readings hour by hour (a window per patient and stream): the
//! backfill over worker threads, and live ticks in real or accelerated time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vitals_core::time::{MS_PER_DAY as DAY, MS_PER_HOUR as HOUR};
use vitals_core::{Clock, SystemClock};
use vitals_sim::{Reading, SimEvent, Which};

use super::{Cohort, Sent, Stop, Target, Totals, progress};

/// One patient's stretch of time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    patient: usize,
    from: i64,
    to: i64,
    which: Which,
}

/// Generates a window and sends it in batches (whole, with the events that ended in it,
/// to a target that aggregates hours).
pub(super) fn send_window(cohort: &Cohort, w: Window, target: &dyn Target, totals: &Totals) -> anyhow::Result<()> {
    let Window { patient: i, from, to, which } = w;
    let (_, patient) = &cohort.members[i];
    let hourly = target.hourly();
    let gen_from = if hourly { from.div_euclid(HOUR) * HOUR } else { from };
    let batch = if hourly { usize::MAX } else { target.batch().max(1) };
    let events: Vec<SimEvent> = if hourly {
        let mut ev = cohort.sim.events(patient, from - 2 * DAY, to);
        ev.retain(|e| e.end_ms >= from && e.end_ms < to);
        ev
    } else {
        Vec::new()
    };
    let mut readings = Vec::with_capacity(batch.min(1 << 16));
    let mut failure = None;
    let mut flush = |readings: &mut Vec<Reading>, events: &[SimEvent]| {
        if failure.is_some() || (readings.is_empty() && events.is_empty()) {
            readings.clear();
            return;
        }
        match target.send(patient, readings, events) {
            Ok(s) => totals.add(s),
            Err(e) => failure = Some(e),
        }
        readings.clear();
    };
    cohort.sim.generate(patient, gen_from, to, which, &mut |r| {
        readings.push(r);
        if readings.len() >= batch {
            flush(&mut readings, &[]);
        }
    });
    flush(&mut readings, &events);
    failure.map_or(Ok(()), Err)
}

/// Writes the cohort's labels and events starting in `[from, to)` as NDJSON lines.
pub(super) fn append_labels(
    cohort: &Cohort,
    from: i64,
    to: i64,
    labels: &mut dyn std::io::Write,
    events: Option<&mut dyn std::io::Write>,
) -> anyhow::Result<()> {
    for (_, p) in &cohort.members {
        for l in cohort.sim.labels(p, from, to) {
            writeln!(labels, "{}", serde_json::to_string(&l)?)?;
        }
    }
    if let Some(ev) = events {
        for (_, p) in &cohort.members {
            for e in cohort.sim.events(p, from, to) {
                writeln!(ev, "{}", serde_json::to_string(&e)?)?;
            }
        }
    }
    Ok(())
}

/// The backfill of `[from, to)` (dense streams from `dense_from`), over `workers` threads.
pub(crate) fn backfill(
    cohort: &Cohort,
    target: &dyn Target,
    (from, dense_from, to): (i64, i64, i64),
    workers: usize,
    stop: &Stop,
    quiet: bool,
) -> anyhow::Result<Sent> {
    const CHUNK: i64 = 3_600_000;
    let mut units = Vec::new();
    for i in 0..cohort.members.len() {
        let mut t = from;
        while t < to {
            let end = (t + CHUNK).min(to);
            units.push(Window { patient: i, from: t, to: end, which: Which::Sparse });
            if end > dense_from && target.carries_dense() {
                units.push(Window { patient: i, from: t.max(dense_from), to: end, which: Which::Dense });
            }
            t = end;
        }
    }
    let bar = progress(units.len() as u64, quiet, "{elapsed_precise} [{bar:30}] {pos}/{len} hours {msg}");
    let totals = Totals::default();
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= units.len() || stop.stopped() {
                        return;
                    }
                    if let Err(e) = send_window(cohort, units[k], target, &totals) {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        next.store(units.len(), Ordering::Relaxed);
                        return;
                    }
                    bar.inc(1);
                    let n = totals.accepted.load(Ordering::Relaxed);
                    bar.set_message(format!("{n} samples, {:.0}/s", n as f64 / started.elapsed().as_secs_f64()));
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(totals.take())
}

/// How live streaming runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveOptions {
    /// Simulated time to start from.
    pub(crate) start_ms: i64,
    /// Simulated seconds per wall-clock second.
    pub(crate) speed: f64,
    /// Never run ahead of the real clock (a server refuses the future).
    pub(crate) clamp_to_now: bool,
    /// Stop at this instant.
    pub(crate) until_wall: Option<Instant>,
}

/// Streams live: each second, what the simulated clock passed since the last tick. Returns
/// the simulated time reached.
pub(crate) fn live(
    cohort: &Cohort,
    target: &dyn Target,
    o: LiveOptions,
    stop: &Stop,
    mut on_tick: impl FnMut(i64, Sent),
) -> anyhow::Result<i64> {
    let LiveOptions { start_ms, speed, clamp_to_now, until_wall } = o;
    let clock = SystemClock;
    let wall0 = Instant::now();
    let mut sim_at = start_ms;
    let totals = Totals::default();
    loop {
        if stop.wait(Duration::from_secs(1)) || until_wall.is_some_and(|u| Instant::now() >= u) {
            return Ok(sim_at);
        }
        let mut next = start_ms + (wall0.elapsed().as_secs_f64() * speed * 1000.0) as i64;
        if clamp_to_now {
            next = next.min(clock.now_ms());
        }
        if next <= sim_at {
            continue;
        }
        for i in 0..cohort.members.len() {
            let which = if target.carries_dense() { Which::All } else { Which::Sparse };
            let w = Window { patient: i, from: sim_at, to: next, which };
            send_window(cohort, w, target, &totals)?;
        }
        on_tick(next, totals.take());
        sim_at = next;
    }
}
