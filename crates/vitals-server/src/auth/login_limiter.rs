//! The rate limit of sign-ins: attempts per client address in the current minute.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::Mutex;

/// Sign-in attempts per client address in the current minute.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl LoginLimiter {
    /// Counts an attempt; false when the address is over its budget for this minute.
    pub fn allow(&self, ip: IpAddr, now_ms: i64, per_minute: u32) -> bool {
        let minute = now_ms.div_euclid(60_000);
        let mut w = self.windows.lock();
        if w.len() > 10_000 {
            w.retain(|_, (m, _)| *m == minute);
        }
        let e = w.entry(ip).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        e.1 <= per_minute
    }
}
