//! Fuzz target: the rule parser never panics, errors point inside the text, and a rule that
//! parses evaluates without panicking.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use vitals_rules::eval::{points, truths};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    match vitals_rules::parse(src) {
        Err(e) => assert!(e.pos <= src.len(), "{e:?} beyond {}", src.len()),
        Ok(expr) => {
            let mut data = BTreeMap::new();
            let mut metrics = Vec::new();
            expr.metrics(&mut metrics);
            for (i, (m, _)) in metrics.iter().enumerate() {
                data.insert(m.clone(), vec![(0, 1.0 + i as f64), (60_000, -2.5), (61_000, 1e9)]);
            }
            let times = points(&[&expr], &data, -3_600_000, 7_200_000);
            assert_eq!(truths(&expr, &data, &times).len(), times.len());
        }
    }
});
