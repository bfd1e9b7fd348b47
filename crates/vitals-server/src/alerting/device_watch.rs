//! The stale-device alarm in the alerting thread (`[alerting.devices] enabled`): every
//! [`CHECK_MS`] it looks at the device book (`crate::devices`) and turns a device the server
//! has not heard from for `stale_after` into a change of the rule `device-stale` (opened,
//! starting `stale_after` after it was last heard, to the minute), and a device heard again
//! into its resolution. Whether the alarm holds is kept in the book, so a restart neither
//! raises it twice nor forgets to resolve it. A device is not judged before the server has
//! been up for `stale_after` (it could not have heard from it while it was down).

use vitals_rules::eval::Episode;
use vitals_rules::live::Change;

use crate::devices::DeviceBook;

/// The rule name of the stale-device alarm.
pub const DEVICE_STALE_RULE: &str = "device-stale";
/// How often the book is looked at.
pub(super) const CHECK_MS: i64 = 10_000;

pub(super) struct DeviceWatch {
    stale_after_ms: i64,
    next_check_ms: i64,
}

impl DeviceWatch {
    pub(super) fn new(stale_after_ms: i64) -> DeviceWatch {
        DeviceWatch { stale_after_ms, next_check_ms: i64::MIN }
    }

    /// The changes due at `now` for the patients `evaluates` holds, each with its
    /// description (which device, since when).
    pub(super) fn check(
        &mut self,
        book: &DeviceBook,
        evaluates: &dyn Fn(&str) -> bool,
        now: i64,
    ) -> Vec<(Change, String)> {
        // This process could hear devices only since it opened the book.
        let started = book.opened_ms();
        if now < self.next_check_ms {
            return Vec::new();
        }
        self.next_check_ms = now.saturating_add(CHECK_MS);
        let mut out = Vec::new();
        for d in book.list(None) {
            if !evaluates(&d.patient) {
                continue;
            }
            // Judged from the server's start at the earliest; heard again means really heard.
            let heard = d.last_heard_ms.max(started);
            let quiet = now.saturating_sub(heard) >= self.stale_after_ms;
            let back = now.saturating_sub(d.last_heard_ms) < self.stale_after_ms;
            let rule = DEVICE_STALE_RULE.to_owned();
            let patient = d.patient.clone();
            match (d.stale_since_ms, quiet, back) {
                (None, true, _) => {
                    let start = (heard + self.stale_after_ms).div_euclid(60_000) * 60_000;
                    book.set_stale(&d.patient, &d.device, Some(start));
                    let episode = Episode { start, fired: start, end: now, cleared: None };
                    let why = format!(
                        "Device {} has not been heard from since {}",
                        d.device,
                        vitals_core::time::format_time(d.last_heard_ms)
                    );
                    out.push((Change::Opened { rule, patient, episode }, why));
                }
                (Some(start), _, true) => {
                    book.set_stale(&d.patient, &d.device, None);
                    let back = d.last_heard_ms.max(start);
                    let episode = Episode { start, fired: start, end: back, cleared: Some(back) };
                    let why = format!("Device {} is heard from again", d.device);
                    out.push((Change::Resolved { rule, patient, episode }, why));
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use vitals_core::{Catalog, DeviceId, PatientId, Sample, Source};

    use super::*;

    fn heard(book: &DeviceBook, device: &str, now: i64) {
        let s = Sample {
            patient: PatientId::new("p-1").expect("p"),
            metric: Catalog::standard().id("heart_rate").expect("m"),
            time_ms: 0,
            value: 60.0,
            device: Some(DeviceId::new(device).expect("d")),
            id: None,
            source: Source::Native,
        };
        book.heard(&[s], now);
    }

    #[test]
    fn a_quiet_device_opens_once_and_resolves_when_heard_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let hour = 3_600_000;
        let first = DeviceBook::open(dir.path(), 0);
        heard(&first, "band", 10 * hour);
        first.save_if_changed().expect("save");
        // The server started (at 12 h) after it last heard the band (at 10 h): it waits an
        // hour from its start.
        let book = DeviceBook::open(dir.path(), 12 * hour);
        let mut w = DeviceWatch::new(hour);
        let all = |_: &str| true;
        assert!(w.check(&book, &all, 12 * hour + 30 * 60_000).is_empty());
        let c = w.check(&book, &all, 13 * hour);
        assert!(
            matches!(&c[..], [(Change::Opened { episode, .. }, why)] if episode.start == 13 * hour && why.contains("band")),
            "{c:?}"
        );
        assert!(w.check(&book, &all, 14 * hour).is_empty(), "opened once");
        // A restart (the book read again, a new watch) remembers it: not raised twice, not
        // resolved by the server's own start.
        book.save_if_changed().expect("save");
        let book = DeviceBook::open(dir.path(), 14 * hour);
        let mut w = DeviceWatch::new(hour);
        assert!(w.check(&book, &all, 14 * hour + 1).is_empty());
        heard(&book, "band", 15 * hour);
        let c = w.check(&book, &all, 15 * hour + CHECK_MS);
        assert!(
            matches!(&c[..], [(Change::Resolved { episode, .. }, _)] if episode.start == 13 * hour && episode.cleared == Some(15 * hour)),
            "{c:?}"
        );
        assert_eq!(book.list(None)[0].stale_since_ms, None);
        // Patients another node evaluates are left alone.
        let mut w = DeviceWatch::new(hour);
        assert!(w.check(&book, &|_| false, 20 * hour).is_empty());
    }
}
