//! The wire formats bodies arrive in, and decoding a body of any of them with the server's
//! validation rules (used by the pipeline, and by the replay of dead letters).

use vitals_cloud::Vendor;
use vitals_core::{Event, Source, Validator};
use vitals_ingest::health_auto_export::{self, Unsupported};
use vitals_ingest::line_protocol::{self, Mapping, Precision};
use vitals_ingest::{Batch, Format, fit, native, nightscout};

/// How a body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Native(Format),
    LineProtocol(Precision),
    /// Health Auto Export JSON; the patient travels beside the body.
    HealthAutoExport,
    /// Health Auto Export's CSV export; the patient travels beside the body.
    HealthAutoExportCsv,
    /// A Nightscout collection (`entries`, `devicestatus`, `treatments`); the patient
    /// travels beside the body.
    Nightscout(NightscoutCollection),
    /// An Empatica E4 signal file or `tags.csv` (a session's files one at a time); decoded
    /// by the file source, kept for inspection only: its lines depend on the file's header.
    Empatica,
    /// An Apple Health `export.xml`, streamed by the file source; kept for inspection only.
    AppleHealth,
    /// A FIT file; the patient travels beside the body.
    Fit,
    /// A Gadgetbridge database, read by the file source; kept for inspection only.
    Gadgetbridge,
    /// A Fitbit Takeout per-day file, read by the file source (its kind is its name).
    FitbitTakeout,
    /// What a vendor's cloud answered a connection's pull; the patient travels beside it.
    Cloud(Vendor),
}

/// The Nightscout collections Vitals takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NightscoutCollection {
    Entries,
    DeviceStatus,
    Treatments,
    Profile,
    Activity,
    Food,
}

impl NightscoutCollection {
    pub fn as_str(self) -> &'static str {
        match self {
            NightscoutCollection::Entries => "entries",
            NightscoutCollection::DeviceStatus => "devicestatus",
            NightscoutCollection::Treatments => "treatments",
            NightscoutCollection::Profile => "profile",
            NightscoutCollection::Activity => "activity",
            NightscoutCollection::Food => "food",
        }
    }
}

/// What a body decoded to.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: Batch,
    pub events: Vec<Event>,
    /// Parts that cannot be stored yet.
    pub unsupported: Vec<Unsupported>,
}

impl WireFormat {
    /// The adapter samples of this format are recorded as having come through.
    pub fn source(self) -> Source {
        match self {
            WireFormat::Native(_) => Source::Native,
            WireFormat::LineProtocol(_) => Source::LineProtocol,
            WireFormat::HealthAutoExport | WireFormat::HealthAutoExportCsv => Source::HealthAutoExport,
            WireFormat::Nightscout(_) => Source::Nightscout,
            WireFormat::Empatica => Source::EmpaticaE4,
            WireFormat::AppleHealth => Source::AppleHealth,
            WireFormat::Fit => Source::Fit,
            WireFormat::Gadgetbridge => Source::Gadgetbridge,
            WireFormat::FitbitTakeout => Source::FitbitTakeout,
            WireFormat::Cloud(v) => v.source(),
        }
    }

    /// The name dead letters record.
    pub fn name(self) -> &'static str {
        match self {
            WireFormat::Native(Format::Json) => "json",
            WireFormat::Native(Format::Ndjson) => "ndjson",
            WireFormat::Native(Format::Csv) => "csv",
            WireFormat::LineProtocol(_) => "line_protocol",
            WireFormat::HealthAutoExport => "health_auto_export",
            WireFormat::HealthAutoExportCsv => "health_auto_export_csv",
            WireFormat::Nightscout(NightscoutCollection::Entries) => "nightscout_entries",
            WireFormat::Nightscout(NightscoutCollection::DeviceStatus) => "nightscout_devicestatus",
            WireFormat::Nightscout(NightscoutCollection::Treatments) => "nightscout_treatments",
            WireFormat::Nightscout(NightscoutCollection::Profile) => "nightscout_profile",
            WireFormat::Nightscout(NightscoutCollection::Activity) => "nightscout_activity",
            WireFormat::Nightscout(NightscoutCollection::Food) => "nightscout_food",
            WireFormat::Empatica => "empatica",
            WireFormat::AppleHealth => "apple_health",
            WireFormat::Fit => "fit",
            WireFormat::Gadgetbridge => "gadgetbridge",
            WireFormat::FitbitTakeout => "fitbit_takeout",
            WireFormat::Cloud(Vendor::DexcomShare) => "cloud_dexcom_share",
            WireFormat::Cloud(Vendor::LibreLinkUp) => "cloud_librelinkup",
            WireFormat::Cloud(Vendor::Oura) => "cloud_oura",
            WireFormat::Cloud(Vendor::Withings) => "cloud_withings",
        }
    }

    /// The format of a recorded name (`precision` for line protocol).
    pub fn parse(name: &str, precision: Option<&str>) -> Option<WireFormat> {
        Some(match name {
            "json" => WireFormat::Native(Format::Json),
            "ndjson" => WireFormat::Native(Format::Ndjson),
            "csv" => WireFormat::Native(Format::Csv),
            "health_auto_export" => WireFormat::HealthAutoExport,
            "health_auto_export_csv" => WireFormat::HealthAutoExportCsv,
            "nightscout_entries" => WireFormat::Nightscout(NightscoutCollection::Entries),
            "nightscout_devicestatus" => WireFormat::Nightscout(NightscoutCollection::DeviceStatus),
            "nightscout_treatments" => WireFormat::Nightscout(NightscoutCollection::Treatments),
            "nightscout_profile" => WireFormat::Nightscout(NightscoutCollection::Profile),
            "nightscout_activity" => WireFormat::Nightscout(NightscoutCollection::Activity),
            "nightscout_food" => WireFormat::Nightscout(NightscoutCollection::Food),
            "line_protocol" => WireFormat::LineProtocol(precision.unwrap_or("ns").parse().ok()?),
            "empatica" => WireFormat::Empatica,
            "apple_health" => WireFormat::AppleHealth,
            "fit" => WireFormat::Fit,
            "gadgetbridge" => WireFormat::Gadgetbridge,
            "fitbit_takeout" => WireFormat::FitbitTakeout,
            "cloud_dexcom_share" => WireFormat::Cloud(Vendor::DexcomShare),
            "cloud_librelinkup" => WireFormat::Cloud(Vendor::LibreLinkUp),
            "cloud_oura" => WireFormat::Cloud(Vendor::Oura),
            "cloud_withings" => WireFormat::Cloud(Vendor::Withings),
            _ => return None,
        })
    }

    /// Formats whose refused items are whole lines, so a dead letter keeps just those.
    pub fn line_based(self) -> bool {
        matches!(
            self,
            WireFormat::Native(Format::Ndjson | Format::Csv) | WireFormat::LineProtocol(_) | WireFormat::Empatica
        )
    }

    /// Whether the format names no patient, so the patient must travel beside the body.
    pub fn needs_patient(self) -> bool {
        matches!(
            self,
            WireFormat::HealthAutoExport
                | WireFormat::HealthAutoExportCsv
                | WireFormat::Nightscout(_)
                | WireFormat::Empatica
                | WireFormat::AppleHealth
                | WireFormat::Fit
                | WireFormat::Gadgetbridge
                | WireFormat::FitbitTakeout
                | WireFormat::Cloud(_)
        )
    }

    /// Decodes a whole body. `now_ms` is the validator's "now" (line protocol lines without
    /// a time take it). Files of E4 sessions, Apple Health exports, Gadgetbridge databases
    /// and Fitbit Takeouts are read by the file source, not here.
    pub fn decode(
        self,
        body: &[u8],
        patient: Option<&str>,
        mapping: &Mapping,
        v: &mut Validator<'_>,
        now_ms: i64,
    ) -> Result<Decoded, String> {
        let need = || patient.ok_or_else(|| "no patient is known for this body".to_owned());
        let whole = |b: Batch| Decoded { batch: b, ..Decoded::default() };
        match self {
            WireFormat::Native(f) => native::decode(body, f, v).map(whole).map_err(|e| e.to_string()),
            WireFormat::LineProtocol(p) => Ok(whole(line_protocol::decode(body, p, mapping, v, now_ms))),
            WireFormat::HealthAutoExport => health_auto_export::decode(body, need()?, v)
                .map(|d| Decoded { batch: d.batch, events: d.events, unsupported: d.unsupported })
                .map_err(|e| e.to_string()),
            WireFormat::HealthAutoExportCsv => health_auto_export::decode_csv(body, need()?, v)
                .map(|d| Decoded { batch: d.batch, events: d.events, unsupported: d.unsupported })
                .map_err(|e| e.to_string()),
            WireFormat::Nightscout(c) => {
                let d = match c {
                    NightscoutCollection::Entries => nightscout::decode_entries(body, need()?, v),
                    NightscoutCollection::DeviceStatus => nightscout::decode_devicestatus(body, need()?, v),
                    NightscoutCollection::Treatments => nightscout::decode_treatments(body, need()?, v),
                    NightscoutCollection::Profile => nightscout::decode_profile(body, need()?, v),
                    NightscoutCollection::Activity => nightscout::decode_activity(body, need()?, v),
                    NightscoutCollection::Food => nightscout::decode_food(body, need()?, v),
                };
                d.map(|d| Decoded { batch: d.batch, events: d.events, unsupported: d.unsupported })
                    .map_err(|e| e.to_string())
            }
            WireFormat::Fit => fit::decode(body, need()?, v)
                .map(|d| Decoded { batch: d.batch, events: d.events, ..Decoded::default() })
                .map_err(|e| e.to_string()),
            WireFormat::Cloud(vendor) => vitals_cloud::decode(vendor, body, need()?, v).map(whole),
            WireFormat::Empatica | WireFormat::AppleHealth | WireFormat::Gadgetbridge | WireFormat::FitbitTakeout => {
                Err(format!(
                    "{} input is read from dropped or uploaded files only; fix the file and send it again",
                    self.name()
                ))
            }
        }
    }
}

/// The name line protocol's `precision` parameter gives a precision.
pub fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Nanoseconds => "ns",
        Precision::Microseconds => "u",
        Precision::Milliseconds => "ms",
        Precision::Seconds => "s",
        Precision::Minutes => "m",
        Precision::Hours => "h",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_name_reads_back() {
        let all = [
            WireFormat::Native(Format::Json),
            WireFormat::Native(Format::Ndjson),
            WireFormat::Native(Format::Csv),
            WireFormat::LineProtocol(Precision::Seconds),
            WireFormat::HealthAutoExport,
            WireFormat::HealthAutoExportCsv,
            WireFormat::Nightscout(NightscoutCollection::Entries),
            WireFormat::Nightscout(NightscoutCollection::DeviceStatus),
            WireFormat::Nightscout(NightscoutCollection::Treatments),
            WireFormat::Nightscout(NightscoutCollection::Profile),
            WireFormat::Nightscout(NightscoutCollection::Activity),
            WireFormat::Nightscout(NightscoutCollection::Food),
            WireFormat::Empatica,
            WireFormat::AppleHealth,
            WireFormat::Fit,
            WireFormat::Gadgetbridge,
            WireFormat::FitbitTakeout,
            WireFormat::Cloud(Vendor::DexcomShare),
            WireFormat::Cloud(Vendor::LibreLinkUp),
            WireFormat::Cloud(Vendor::Oura),
            WireFormat::Cloud(Vendor::Withings),
        ];
        for f in all {
            let precision = match f {
                WireFormat::LineProtocol(p) => Some(precision_name(p)),
                _ => None,
            };
            assert_eq!(WireFormat::parse(f.name(), precision), Some(f), "{}", f.name());
        }
        assert_eq!(WireFormat::parse("xml", None), None);
    }
}
