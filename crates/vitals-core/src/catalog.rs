//! The metric catalog: every metric's stable code, canonical unit, unit aliases,
//! plausible range, LOINC code, aggregation and storage resolution, as data.
//!
//! Codes are part of the public API and the lake layout: never rename one.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

/// Index of a metric in the catalog (stable only within one build; persist codes, not ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(pub u16);

/// How samples of a metric combine over a time bucket when no aggregate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Rates and levels (heart rate, glucose): the mean.
    Mean,
    /// Counts and amounts (steps, energy): the sum.
    Sum,
}

/// `canonical = value * factor + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Conversion {
    pub factor: f64,
    pub offset: f64,
}

const SAME: Conversion = Conversion { factor: 1.0, offset: 0.0 };
const fn times(factor: f64) -> Conversion {
    Conversion { factor, offset: 0.0 }
}
const FAHRENHEIT: Conversion = Conversion { factor: 5.0 / 9.0, offset: -32.0 * 5.0 / 9.0 };

/// One metric of the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Stable public code, e.g. `heart_rate`.
    pub code: &'static str,
    /// Human-readable name.
    pub name: &'static str,
    /// Canonical unit; stored values are in it.
    pub unit: &'static str,
    /// Unit spellings accepted on input, with their conversion to the canonical unit.
    #[serde(skip)]
    pub aliases: &'static [(&'static str, Conversion)],
    /// Plausible range in the canonical unit (inclusive); values outside are rejected.
    pub min: f64,
    pub max: f64,
    /// LOINC code where one exists.
    pub loinc: Option<&'static str>,
    pub aggregation: Aggregation,
    /// Decimal digits kept on disk: values are stored as integers scaled by 10^scale.
    pub scale: u8,
}

impl Metric {
    /// The canonical unit as a UCUM code (FHIR's `Quantity.code`).
    pub fn ucum(&self) -> &'static str {
        match self.unit {
            "bpm" | "breaths/min" => "/min",
            "degC" => "Cel",
            "count" => "1",
            "mmHg" => "mm[Hg]",
            "dBASPL" => "dB[SPL]",
            "dBm" => "dB[mW]",
            "g" => "[g]",
            // Already UCUM: ms, uS, mg/dL, kcal, %, m, km/h, cm, kg, 1.
            other => other,
        }
    }
}

macro_rules! metric {
    ($code:literal, $name:literal, $unit:literal, [$($alias:literal => $conv:expr),* $(,)?], $min:expr, $max:expr, $loinc:expr, $agg:ident, $scale:literal) => {
        Metric {
            code: $code,
            name: $name,
            unit: $unit,
            aliases: &[($unit, SAME), $(($alias, $conv)),*],
            min: $min,
            max: $max,
            loinc: $loinc,
            aggregation: Aggregation::$agg,
            scale: $scale,
        }
    };
}

static METRICS: [Metric; 33] = [
    metric!("heart_rate", "Heart rate", "bpm", ["count/min" => SAME, "/min" => SAME, "beats/min" => SAME, "1/min" => SAME, "BPM" => SAME], 20.0, 300.0, Some("8867-4"), Mean, 1),
    metric!("heart_rate_min", "Heart rate, minimum of interval", "bpm", ["count/min" => SAME, "/min" => SAME, "beats/min" => SAME], 20.0, 300.0, Some("8867-4"), Mean, 1),
    metric!("heart_rate_max", "Heart rate, maximum of interval", "bpm", ["count/min" => SAME, "/min" => SAME, "beats/min" => SAME], 20.0, 300.0, Some("8867-4"), Mean, 1),
    metric!("resting_heart_rate", "Resting heart rate", "bpm", ["count/min" => SAME, "/min" => SAME, "beats/min" => SAME], 20.0, 250.0, Some("40443-4"), Mean, 1),
    metric!("rr_interval", "RR (inter-beat) interval", "ms", ["s" => times(1000.0)], 150.0, 3000.0, None, Mean, 1),
    metric!("hrv_sdnn", "Heart rate variability (SDNN)", "ms", ["s" => times(1000.0)], 0.0, 1000.0, Some("80404-7"), Mean, 2),
    metric!("skin_temperature", "Skin temperature", "degC", ["°C" => SAME, "C" => SAME, "celsius" => SAME, "degF" => FAHRENHEIT, "°F" => FAHRENHEIT, "F" => FAHRENHEIT], 15.0, 45.0, Some("39106-0"), Mean, 2),
    metric!("body_temperature", "Body temperature", "degC", ["°C" => SAME, "C" => SAME, "celsius" => SAME, "degF" => FAHRENHEIT, "°F" => FAHRENHEIT, "F" => FAHRENHEIT], 30.0, 45.0, Some("8310-5"), Mean, 2),
    metric!("eda", "Electrodermal activity", "uS", ["µS" => SAME, "μS" => SAME, "microsiemens" => SAME], 0.0, 100.0, None, Mean, 3),
    metric!("blood_glucose", "Blood glucose", "mg/dL", ["mg/dl" => SAME, "mmol/L" => times(18.0156), "mmol/l" => times(18.0156), "mmol<180.1558800000541>/L" => times(18.015_588)], 10.0, 1000.0, Some("2339-0"), Mean, 1),
    metric!("step_count", "Steps", "count", ["steps" => SAME, "count/min" => SAME], 0.0, 100_000.0, Some("55423-8"), Sum, 0),
    metric!("active_energy", "Active energy burned", "kcal", ["Cal" => SAME, "kJ" => times(1.0 / 4.184)], 0.0, 20_000.0, Some("41981-2"), Sum, 3),
    metric!("resting_energy", "Resting (basal) energy burned", "kcal", ["Cal" => SAME, "kJ" => times(1.0 / 4.184)], 0.0, 20_000.0, None, Sum, 3),
    metric!("spo2", "Oxygen saturation (SpO2)", "%", ["percent" => SAME], 50.0, 100.0, Some("59408-5"), Mean, 1),
    metric!("respiratory_rate", "Respiratory rate", "breaths/min", ["count/min" => SAME, "/min" => SAME, "brpm" => SAME], 2.0, 80.0, Some("9279-1"), Mean, 1),
    metric!("blood_pressure_systolic", "Blood pressure, systolic", "mmHg", ["mm[Hg]" => SAME, "kPa" => times(7.500_62)], 40.0, 300.0, Some("8480-6"), Mean, 0),
    metric!("blood_pressure_diastolic", "Blood pressure, diastolic", "mmHg", ["mm[Hg]" => SAME, "kPa" => times(7.500_62)], 20.0, 200.0, Some("8462-4"), Mean, 0),
    metric!("flights_climbed", "Flights climbed", "count", ["flights" => SAME], 0.0, 1000.0, None, Sum, 0),
    metric!("headphone_audio_exposure", "Headphone audio exposure", "dBASPL", ["dB" => SAME, "dBA" => SAME, "dB(A)" => SAME], 0.0, 150.0, None, Mean, 2),
    metric!("walking_running_distance", "Walking + running distance", "m", ["km" => times(1000.0), "mi" => times(1609.344), "ft" => times(0.3048), "yd" => times(0.9144)], 0.0, 100_000.0, None, Sum, 2),
    metric!("walking_speed", "Walking speed", "km/h", ["km/hr" => SAME, "m/s" => times(3.6), "mph" => times(1.609_344), "mi/hr" => times(1.609_344)], 0.0, 30.0, None, Mean, 2),
    metric!("walking_step_length", "Walking step length", "cm", ["m" => times(100.0), "in" => times(2.54)], 0.0, 300.0, None, Mean, 1),
    metric!("walking_asymmetry", "Walking asymmetry", "%", ["percent" => SAME], 0.0, 100.0, None, Mean, 2),
    metric!("walking_double_support", "Walking double support time", "%", ["percent" => SAME], 0.0, 100.0, None, Mean, 2),
    metric!("battery_level", "Device battery level", "%", ["percent" => SAME], 0.0, 100.0, None, Mean, 1),
    metric!("signal_strength", "Device radio signal strength", "dBm", [], -150.0, 20.0, None, Mean, 1),
    metric!("acceleration_x", "Acceleration, x axis", "g", ["1/64g" => times(1.0 / 64.0)], -16.0, 16.0, None, Mean, 3),
    metric!("acceleration_y", "Acceleration, y axis", "g", ["1/64g" => times(1.0 / 64.0)], -16.0, 16.0, None, Mean, 3),
    metric!("acceleration_z", "Acceleration, z axis", "g", ["1/64g" => times(1.0 / 64.0)], -16.0, 16.0, None, Mean, 3),
    metric!("bvp", "Blood volume pulse (photoplethysmogram)", "1", [], -10_000.0, 10_000.0, None, Mean, 2),
    metric!("body_mass", "Body mass", "kg", ["lb" => times(0.453_592_37), "g" => times(0.001)], 0.5, 700.0, Some("29463-7"), Mean, 2),
    metric!("blood_glucose_meter", "Blood glucose, fingerstick meter", "mg/dL", ["mg/dl" => SAME, "mmol/L" => times(18.0156), "mmol/l" => times(18.0156)], 10.0, 1000.0, Some("2339-0"), Mean, 1),
    metric!("stress_level", "Stress level (0-100, as the device scores it)", "1", ["score" => SAME], 0.0, 100.0, None, Mean, 0),
];

/// The catalog with its lookup tables.
#[derive(Debug)]
pub struct Catalog {
    by_code: HashMap<&'static str, MetricId>,
}

impl Catalog {
    /// The built-in catalog (a process-wide singleton).
    pub fn standard() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog {
            by_code: METRICS.iter().enumerate().map(|(i, m)| (m.code, MetricId(i as u16))).collect(),
        })
    }

    pub fn id(&self, code: &str) -> Option<MetricId> {
        self.by_code.get(code).copied()
    }

    pub fn get(&self, id: MetricId) -> &'static Metric {
        &METRICS[usize::from(id.0) % METRICS.len()]
    }

    pub fn by_code(&self, code: &str) -> Option<&'static Metric> {
        self.id(code).map(|id| self.get(id))
    }

    pub fn all(&self) -> impl Iterator<Item = (MetricId, &'static Metric)> {
        METRICS.iter().enumerate().map(|(i, m)| (MetricId(i as u16), m))
    }

    pub fn len(&self) -> usize {
        METRICS.len()
    }

    pub fn is_empty(&self) -> bool {
        METRICS.is_empty()
    }
}

impl Metric {
    /// The conversion for a unit spelling, if the metric accepts it.
    pub fn conversion(&self, unit: &str) -> Option<Conversion> {
        let unit = unit.trim();
        self.aliases.iter().find(|(a, _)| *a == unit).map(|(_, c)| *c)
    }

    /// Unit spellings accepted for this metric.
    pub fn unit_aliases(&self) -> impl Iterator<Item = &'static str> {
        self.aliases.iter().map(|(a, _)| *a)
    }

    /// Rounds a canonical value to the stored resolution.
    pub fn quantize(&self, value: f64) -> f64 {
        let p = 10f64.powi(i32::from(self.scale));
        (value * p).round() / p
    }
}

impl Conversion {
    pub fn apply(self, value: f64) -> f64 {
        value * self.factor + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [&str; 23] = [
        "heart_rate",
        "rr_interval",
        "skin_temperature",
        "body_temperature",
        "eda",
        "blood_glucose",
        "step_count",
        "active_energy",
        "resting_energy",
        "resting_heart_rate",
        "hrv_sdnn",
        "spo2",
        "respiratory_rate",
        "blood_pressure_systolic",
        "blood_pressure_diastolic",
        "flights_climbed",
        "headphone_audio_exposure",
        "walking_running_distance",
        "walking_speed",
        "walking_step_length",
        "walking_asymmetry",
        "walking_double_support",
        "battery_level",
    ];

    #[test]
    fn catalog_has_every_metric_the_design_names() {
        let c = Catalog::standard();
        for code in REQUIRED {
            assert!(c.by_code(code).is_some(), "{code} missing");
        }
    }

    #[test]
    fn codes_are_unique_and_ranges_sane() {
        let c = Catalog::standard();
        assert_eq!(c.by_code.len(), c.len(), "duplicate code");
        for (_, m) in c.all() {
            assert!(m.min < m.max, "{}", m.code);
            assert!(m.scale <= 6, "{}", m.code);
            assert!(crate::id::check_id(m.code).is_ok(), "{}", m.code);
            assert_eq!(m.conversion(m.unit), Some(SAME), "{}", m.code);
        }
    }

    #[test]
    fn unit_conversions_match_hand_computed_values() {
        let c = Catalog::standard();
        let cases = [
            ("blood_glucose", "mmol/L", 5.5, 99.0858),
            ("blood_glucose", "mg/dL", 100.0, 100.0),
            ("active_energy", "kJ", 418.4, 100.0),
            ("skin_temperature", "degF", 98.6, 37.0),
            ("skin_temperature", "°C", 33.5, 33.5),
            ("walking_running_distance", "km", 1.5, 1500.0),
            ("rr_interval", "s", 0.8, 800.0),
        ];
        for (code, unit, v, want) in cases {
            let m = c.by_code(code).expect("metric");
            let got = m.conversion(unit).expect("unit").apply(v);
            assert!((got - want).abs() < 1e-6, "{code} {unit}: {got} != {want}");
        }
        assert!(c.by_code("blood_glucose").expect("m").conversion("furlongs").is_none());
    }

    #[test]
    fn quantize_rounds_to_scale() {
        let m = Catalog::standard().by_code("eda").expect("eda");
        assert_eq!(m.quantize(0.123_456), 0.123);
    }
}
