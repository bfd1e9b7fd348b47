//! Glycemic variability beyond the consensus metrics, computed as the reference
//! implementation iglu (Broll et al., PLOS ONE 2021) computes them, so that a clinician
//! comparing Vitals with a research pipeline sees the same numbers:
//!
//! - LBGI and HBGI, the low and high blood glucose indices (Kovatchev et al. 1998, 1997):
//!   `10 f(g)^2` averaged over all readings, `f(g) = 1.509 (ln(g)^1.084 - 5.381)` counted
//!   on the low (below 112.5 mg/dL) or high side;
//! - GRI, the glycemia risk index (Klonoff et al. 2023): `3.0 VLow + 2.4 Low + 1.6 VHigh +
//!   0.8 High` in percent of readings, at most 100;
//! - the J-index (Wojcicki 1995): `0.001 (mean + SD)^2`;
//! - MODD, the mean of daily differences (Molnar et al. 1972), and CONGA(n), continuous
//!   overall net glycemic action (McDonnell et al. 2005), on the readings interpolated onto
//!   a regular grid of each local day;
//! - MAGE, the mean amplitude of glycemic excursions (Service et al. 1970), found with the
//!   moving-average method of Fernandes et al. (2022): crossings of a 5- and a 32-point
//!   moving average of the 5-minute grid delimit the peaks and nadirs, excursions larger
//!   than one SD count, averaged up and down, each stretch of data (split at gaps over 3
//!   hours) weighted by its length.
//!
//! Pure functions over `(time_ms, mg/dL)` readings; the day of the grid is the viewer's
//! local day ([`Offsets`]).

use super::Offsets;
use serde::Serialize;

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;
/// Readings further apart than this are not interpolated between (iglu's `inter_gap`).
const INTER_GAP_MIN: i64 = 45;
/// MAGE's stretches of data end at gaps longer than this (iglu's `max_gap`).
const MAGE_MAX_GAP_MIN: i64 = 180;
/// MAGE's grid step and moving-average lengths (points).
const MAGE_STEP_MIN: i64 = 5;
const MAGE_SHORT_MA: usize = 5;
const MAGE_LONG_MA: usize = 32;
/// The largest grid interpolated (points): 400 days at one reading a minute is 576,000.
pub const MAX_GRID_POINTS: usize = 1_000_000;

/// Variability over a set of readings. The time-based metrics are `None` when the
/// readings do not allow them (a single day has no day-to-day difference, no stretch long
/// enough for MAGE, an hour's lag beyond the data).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variability {
    /// Standard deviation (sample), mg/dL; `None` for a single reading.
    pub sd: Option<f64>,
    pub lbgi: f64,
    pub hbgi: f64,
    pub gri: f64,
    /// `None` for a single reading (no SD).
    pub j_index: Option<f64>,
    /// Mean of daily differences, mg/dL.
    pub modd: Option<f64>,
    /// CONGA over one hour, mg/dL.
    pub conga1: Option<f64>,
    /// Mean amplitude of glycemic excursions, mg/dL.
    pub mage: Option<f64>,
    /// Minutes between grid points (the most common interval between readings).
    pub grid_step_min: Option<i64>,
}

/// The variability metrics of readings `(time_ms, mg/dL)`, in any order (one per time:
/// the last given wins); `None` without readings.
pub fn variability(readings: &[(i64, f64)], offsets: &Offsets) -> Option<Variability> {
    let local = local_series(readings, offsets);
    let values: Vec<f64> = local.iter().map(|r| r.1).collect();
    if values.is_empty() {
        return None;
    }
    let grid = Grid::day_by_day(&local, None);
    let sd = sample_sd(&values);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Some(Variability {
        sd,
        lbgi: risk_index(&values, false),
        hbgi: risk_index(&values, true),
        gri: gri(&values),
        j_index: sd.map(|sd| 0.001 * (mean + sd).powi(2)),
        modd: grid.as_ref().and_then(|g| modd(g, 1)),
        conga1: grid.as_ref().and_then(|g| conga(g, 1)),
        mage: mage(&local),
        grid_step_min: grid.as_ref().map(|g| g.step_min),
    })
}

/// The readings at local time (the offset in effect at each), sorted, one per time (the
/// last given wins), without values that are not positive numbers.
pub fn local_series(readings: &[(i64, f64)], offsets: &Offsets) -> Vec<(i64, f64)> {
    let mut local: Vec<(i64, f64)> = readings
        .iter()
        .filter(|r| r.1.is_finite() && r.1 > 0.0)
        .map(|&(t, v)| (t.saturating_add(offsets.at(t)), v))
        .collect();
    local.sort_by_key(|r| r.0);
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(local.len());
    for r in local {
        match out.last_mut() {
            Some(last) if last.0 == r.0 => *last = r,
            _ => out.push(r),
        }
    }
    out
}

/// Sample standard deviation (n - 1); `None` below two values.
fn sample_sd(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    Some((values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
}

/// LBGI (`high` false) or HBGI: `10 f(g)^2` on one side, averaged over every reading.
fn risk_index(values: &[f64], high: bool) -> f64 {
    let sum: f64 = values
        .iter()
        .filter(|g| if high { **g >= 112.5 } else { **g < 112.5 })
        .map(|g| {
            let f = 1.509 * (g.ln().powf(1.084) - 5.381);
            let f = if high { f.max(0.0) } else { f.min(0.0) };
            10.0 * f * f
        })
        .sum();
    sum / values.len() as f64
}

/// The glycemia risk index from the shares below 54, below 70, above 180 and above 250.
fn gri(values: &[f64]) -> f64 {
    let share = |f: &dyn Fn(f64) -> bool| 100.0 * values.iter().filter(|v| f(**v)).count() as f64 / values.len() as f64;
    let (below54, below70) = (share(&|v| v < 54.0), share(&|v| v < 70.0));
    let (above250, above180) = (share(&|v| v > 250.0), share(&|v| v > 180.0));
    (3.0 * below54 + 2.4 * (below70 - below54) + 1.6 * above250 + 0.8 * (above180 - above250)).min(100.0)
}

/// Readings interpolated onto a regular grid covering whole local days: point `i` is at
/// `start_ms + (i + 1) * step`, so each day's points end at its midnight; `NaN` where no
/// reading is near (before the first, after the last, inside a gap of more than 45
/// minutes).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Local midnight before the first reading.
    pub start_ms: i64,
    pub step_min: i64,
    pub values: Vec<f64>,
}

impl Grid {
    /// The grid of local readings (sorted, unique times, see [`local_series`]) with
    /// `step_min` between points, or by default the most common whole number of minutes
    /// between readings (the smallest on a tie), lowered to a divisor of a day. `None`
    /// below two readings or past [`MAX_GRID_POINTS`].
    pub fn day_by_day(local: &[(i64, f64)], step_min: Option<i64>) -> Option<Grid> {
        let (first, last) = (local.first()?.0, local.last()?.0);
        let step_min = match step_min {
            Some(s) => s,
            None => usual_interval_min(local)?,
        };
        let mut step_min = step_min.clamp(1, 1440);
        while 1440 % step_min != 0 {
            step_min -= 1;
        }
        let step = step_min * MINUTE_MS;
        let start_ms = first.div_euclid(DAY_MS) * DAY_MS;
        let end_ms = -((-last).div_euclid(DAY_MS)) * DAY_MS;
        let days = usize::try_from((end_ms - start_ms) / DAY_MS).ok()?;
        let points = days.checked_mul((1440 / step_min) as usize).filter(|p| *p <= MAX_GRID_POINTS)?;
        let mut values = Vec::with_capacity(points);
        let mut k = 0usize;
        for i in 0..points as i64 {
            let t = start_ms + (i + 1) * step;
            if t < first || t > last {
                values.push(f64::NAN);
                continue;
            }
            while k + 1 < local.len() && local[k + 1].0 <= t {
                k += 1;
            }
            let (t0, v0) = local[k];
            values.push(match local.get(k + 1) {
                Some(&(t1, v1)) if t > t0 => v0 + (v1 - v0) / (t1 - t0) as f64 * (t - t0) as f64,
                _ => v0,
            });
        }
        // Gaps: from the point after the reading before the gap up to, not including, the
        // point at or after the reading that ends it.
        for w in local.windows(2) {
            if w[1].0 - w[0].0 > INTER_GAP_MIN * MINUTE_MS {
                let from = (w[0].0 - start_ms).div_euclid(step).max(0) as usize;
                let to = ((w[1].0 - start_ms - 1000).div_euclid(step).max(0) as usize).min(values.len());
                if from < to {
                    values[from..to].fill(f64::NAN);
                }
            }
        }
        Some(Grid { start_ms, step_min, values })
    }

    /// Grid points per hour.
    fn per_hour(&self) -> usize {
        (60.0 / self.step_min as f64).round() as usize
    }
}

/// The most common interval between readings (the shortest on a tie) in whole minutes,
/// rounded down; intervals under a minute count only if there are no others.
fn usual_interval_min(local: &[(i64, f64)]) -> Option<i64> {
    let mut counts = std::collections::BTreeMap::<i64, usize>::new();
    for w in local.windows(2) {
        *counts.entry(w[1].0 - w[0].0).or_default() += 1;
    }
    let best = |min_ms: i64| {
        counts
            .iter()
            .filter(|(ms, _)| **ms >= min_ms)
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(ms, _)| *ms / MINUTE_MS)
    };
    best(0).filter(|m| *m > 0).or_else(|| best(MINUTE_MS))
}

/// MODD over a lag of `days`: the mean absolute difference between points a day apart.
pub fn modd(grid: &Grid, days: usize) -> Option<f64> {
    let shift = days * (1440 / grid.step_min) as usize;
    let diffs = lagged_differences(&grid.values, shift);
    (!diffs.is_empty()).then(|| diffs.iter().map(|d| d.abs()).sum::<f64>() / diffs.len() as f64)
}

/// CONGA over `hours`: the sample SD of the differences between points that far apart;
/// `None` below two such differences.
pub fn conga(grid: &Grid, hours: usize) -> Option<f64> {
    sample_sd(&lagged_differences(&grid.values, grid.per_hour() * hours))
}

fn lagged_differences(values: &[f64], lag: usize) -> Vec<f64> {
    if lag == 0 || lag >= values.len() {
        return Vec::new();
    }
    values[lag..].iter().zip(values).map(|(b, a)| b - a).filter(|d| !d.is_nan()).collect()
}

/// MAGE of local readings (sorted, unique times): `None` when no stretch of data has an
/// excursion larger than its SD.
pub fn mage(local: &[(i64, f64)]) -> Option<f64> {
    let grid = Grid::day_by_day(local, Some(MAGE_STEP_MIN))?;
    let valid: Vec<usize> = (0..grid.values.len()).filter(|i| !grid.values[*i].is_nan()).collect();
    let (mut weighted, mut total) = (0.0, 0.0);
    // Stretches from a valid point to a valid point, split where the next valid point is
    // more than MAGE_MAX_GAP_MIN away.
    let mut begin = 0;
    for k in 0..valid.len() {
        let ends = k + 1 == valid.len() || (valid[k + 1] - valid[k]) as i64 * MAGE_STEP_MIN > MAGE_MAX_GAP_MIN;
        if !ends {
            continue;
        }
        let stretch = &grid.values[valid[begin]..=valid[k]];
        // Weighted by the stretch's length.
        let span = (valid[k] - valid[begin]) as f64;
        for amplitude in excursions(stretch).into_iter().flatten() {
            weighted += amplitude * span;
            total += span;
        }
        begin = k + 1;
    }
    (total > 0.0).then(|| weighted / total)
}

/// The mean upward and downward excursion amplitudes of one stretch of the 5-minute grid
/// (`NaN` inside gaps), each `None` if there is none.
fn excursions(gl: &[f64]) -> [Option<f64>; 2] {
    let n = gl.len();
    let valid: Vec<f64> = gl.iter().copied().filter(|v| !v.is_nan()).collect();
    let sd = sample_sd(&valid).unwrap_or(f64::NAN);
    if valid.is_empty() || n < 7 || n < MAGE_SHORT_MA || sd < 1.0 {
        return [None, None];
    }
    let short = moving_average(gl, MAGE_SHORT_MA);
    let long = moving_average(gl, MAGE_LONG_MA);
    let delta: Vec<f64> = short.iter().zip(&long).map(|(s, l)| s - l).collect();
    let crossings = crossings(gl, &delta);
    let turns = turning_points(gl, &crossings);
    let plus = excursion_heights(&turns, sd, true);
    let minus = excursion_heights(&turns, sd, false);
    let mean = |h: &[f64]| (!h.is_empty()).then(|| h.iter().sum::<f64>() / h.len() as f64);
    [mean(&plus).filter(|m| !m.is_nan()), mean(&minus).map(f64::abs).filter(|m| !m.is_nan())]
}

/// The trailing mean over `window` points of the values that are there (`NaN` where none
/// is); the first `window` points take the value of the first full window (of the last
/// point when the stretch is shorter).
fn moving_average(gl: &[f64], window: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..gl.len())
        .map(|i| {
            let w = &gl[(i + 1).saturating_sub(window)..=i];
            let (sum, count) = w.iter().filter(|v| !v.is_nan()).fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
            if count == 0 { f64::NAN } else { sum / count as f64 }
        })
        .collect();
    let fill = out[window.min(out.len()) - 1];
    let head = window.min(out.len());
    out[..head].fill(fill);
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Turn {
    Nadir,
    Peak,
}

/// Where the short moving average crosses the long one, with the kind of extremum that
/// follows each crossing; the first and the last point always count.
fn crossings(gl: &[f64], delta: &[f64]) -> Vec<(usize, Turn)> {
    let n = delta.len();
    let kind = |d: f64| if d > 0.0 { Turn::Peak } else { Turn::Nadir };
    let mut out = vec![(0, kind(delta[0]))];
    let delta: Vec<f64> = delta.iter().map(|d| if *d == 0.0 { f64::NAN } else { *d }).collect();
    for i in 1..n {
        let (d, before) = (delta[i], delta[i - 1]);
        if !gl[i].is_nan() && !gl[i - 1].is_nan() && !d.is_nan() && !before.is_nan() {
            if d * before < 0.0 {
                out.push((i, if d < before { Turn::Nadir } else { Turn::Peak }));
            }
        } else if !d.is_nan() {
            // After a gap: compare with the delta at the last crossing.
            let previous = delta[out[out.len() - 1].0];
            if d * previous < 0.0 {
                out.push((i, if d < previous { Turn::Nadir } else { Turn::Peak }));
            }
        }
    }
    out.push((n - 1, kind(delta[n - 1])));
    out
}

/// The extremum between consecutive crossings (from the previous extremum on): the
/// lowest value after a downward crossing, the highest after an upward one (the first
/// such point).
fn turning_points(gl: &[f64], crossings: &[(usize, Turn)]) -> Vec<f64> {
    let mut out = Vec::with_capacity(crossings.len().saturating_sub(1));
    let mut from = crossings.first().map_or(0, |c| c.0);
    for w in crossings.windows(2) {
        let (kind, to) = (w[0].1, w[1].0);
        let mut best: Option<(usize, f64)> = None;
        for (i, v) in gl.iter().enumerate().take(to + 1).skip(from) {
            if v.is_nan() {
                continue;
            }
            let better = match (best, kind) {
                (None, _) => true,
                (Some((_, b)), Turn::Nadir) => *v < b,
                (Some((_, b)), Turn::Peak) => *v > b,
            };
            if better {
                best = Some((i, *v));
            }
        }
        match best {
            Some((i, v)) => {
                out.push(v);
                from = i;
            }
            None => out.push(f64::NAN),
        }
    }
    out
}

/// The heights of the excursions larger than `sd` going up (`up`) or down between the
/// turning points `m`, each from the lowest (highest) point since the last excursion to
/// the highest (lowest) point before the values turn back by more than `sd`.
fn excursion_heights(m: &[f64], sd: f64, up: bool) -> Vec<f64> {
    let n = m.len();
    let sign = if up { 1.0 } else { -1.0 };
    let key = |x: usize| sign * m[x];
    let mut heights = Vec::new();
    let (mut j, mut prev_j) = (0usize, 0usize);
    // The lowest key (first such point) of m[prev_j..scanned], and whether a NaN is there:
    // the largest rise (fall) into j from a point since prev_j is key(j) - key(lowest).
    let (mut lowest, mut scanned, mut nan) = (None::<usize>, 0usize, false);
    while j < n {
        while scanned <= j {
            if key(scanned).is_nan() {
                nan = true;
            } else if lowest.is_none_or(|l| key(scanned) < key(l)) {
                lowest = Some(scanned);
            }
            scanned += 1;
        }
        let Some(i) = lowest.filter(|&l| !nan && key(j) - key(l) > sd) else {
            j += 1;
            continue;
        };
        let mut k = j;
        while k < n {
            if key(k) - key(j) >= 0.0 {
                j = k;
            }
            if key(k) - key(j) < -sd || k == n - 1 {
                heights.push(m[j] - m[i]);
                prev_j = if up { k } else { j };
                j = k;
                break;
            }
            k += 1;
        }
        (lowest, scanned, nan) = (None, prev_j, false);
    }
    heights
}

#[cfg(test)]
mod tests;
