//! A Nightscout site's settings (the server's `[nightscout]` section) and the
//! `status.json` that tells them to followers and uploaders: units, the glucose thresholds
//! their screens colour by, the plugins a follower shows. The same for every patient.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vitals_core::time::format_time;

use crate::nightscout_doc::num;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NightscoutConfig {
    /// `mg/dl` or `mmol`: the units followers display.
    pub units: String,
    /// Above this (mg/dL) is urgent high.
    pub bg_high: f64,
    /// Top of the target range (mg/dL).
    pub bg_target_top: f64,
    /// Bottom of the target range (mg/dL).
    pub bg_target_bottom: f64,
    /// Below this (mg/dL) is urgent low.
    pub bg_low: f64,
    /// Plugins followers enable (Nightscout's `ENABLE`): the pills and forecasts they show.
    pub enable: Vec<String>,
    /// The name followers show for the site.
    pub custom_title: String,
}

impl Default for NightscoutConfig {
    fn default() -> Self {
        NightscoutConfig {
            units: "mg/dl".into(),
            bg_high: 260.0,
            bg_target_top: 180.0,
            bg_target_bottom: 70.0,
            bg_low: 55.0,
            enable: [
                "careportal",
                "rawbg",
                "iob",
                "cob",
                "bwp",
                "cage",
                "sage",
                "iage",
                "bage",
                "basal",
                "pump",
                "openaps",
                "loop",
                "upbat",
                "delta",
                "direction",
                "timeago",
                "devicestatus",
                "profile",
            ]
            .map(String::from)
            .to_vec(),
            custom_title: "Vitals".into(),
        }
    }
}

impl NightscoutConfig {
    /// What is wrong with the section, each as one sentence.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !matches!(self.units.as_str(), "mg/dl" | "mmol") {
            out.push(format!("nightscout.units {:?} must be \"mg/dl\" or \"mmol\"", self.units));
        }
        let t = [self.bg_low, self.bg_target_bottom, self.bg_target_top, self.bg_high];
        if !t.iter().all(|v| v.is_finite() && *v > 0.0) || !t.windows(2).all(|w| w[0] < w[1]) {
            out.push("nightscout: bg_low < bg_target_bottom < bg_target_top < bg_high, all positive mg/dL".into());
        }
        out
    }
}

impl NightscoutConfig {
    /// `status.json` of a site with these settings, at `now_ms`, of server `version`.
    pub fn status_json(&self, version: &str, now_ms: i64) -> Value {
        let on = |plugin: &str| self.enable.iter().any(|e| e == plugin);
        json!({
            "status": "ok", "name": "Vitals", "version": version,
            "serverTime": format_time(now_ms), "serverTimeEpoch": now_ms,
            "apiEnabled": true, "careportalEnabled": on("careportal"), "boluscalcEnabled": on("boluscalc"),
            "settings": {
                "units": self.units, "timeFormat": 24, "customTitle": self.custom_title, "theme": "colors",
                "alarmUrgentHigh": true, "alarmHigh": true, "alarmLow": true, "alarmUrgentLow": true,
                "enable": self.enable, "showPlugins": self.enable.join(" "),
                "thresholds": {"bgHigh": num(self.bg_high), "bgTargetTop": num(self.bg_target_top),
                               "bgTargetBottom": num(self.bg_target_bottom), "bgLow": num(self.bg_low)},
                "authDefaultRoles": "",
                "DEFAULT_FEATURES": ["bgnow", "delta", "direction", "timeago", "devicestatus", "upbat", "errorcodes", "profile"]
            },
            "extendedSettings": {"devicestatus": {"advanced": true}},
            "authorized": null
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_thresholds_are_checked() {
        assert!(NightscoutConfig::default().problems().is_empty());
        let bad = NightscoutConfig { units: "mmol/L".into(), bg_low: 200.0, ..NightscoutConfig::default() };
        let why = bad.problems();
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("nightscout.units") && why[1].contains("bg_low <"), "{why:?}");
        let status = NightscoutConfig { units: "mmol".into(), ..NightscoutConfig::default() }.status_json("1.0", 0);
        assert_eq!(
            (&status["settings"]["units"], &status["settings"]["thresholds"]["bgLow"]),
            (&json!("mmol"), &json!(55))
        );
        assert_eq!(status["careportalEnabled"], json!(true));
    }
}
