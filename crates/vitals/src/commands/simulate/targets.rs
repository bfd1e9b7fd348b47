//! Where simulated readings go: files, or a running server over each ingest path a real
//! client uses (native NDJSON, InfluxDB line protocol, Health Auto Export JSON, a
//! Nightscout uploader, MQTT through a broker, Kafka/Event Hubs).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use sha1::Digest as _;
use vitals_sim::{Device, Encoding, Patient, Reading, SimEvent};

use crate::client::Client;
use crate::commands::url_escape;

/// What a send achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    /// Readings the path has no form for (e.g. motion over Nightscout): not sent.
    pub(crate) skipped: u64,
}

/// A destination for readings.
pub(crate) trait Target: Send + Sync {
    /// Sends some of one patient's readings (and, for hourly targets, the events that
    /// ended in the window).
    fn send(&self, patient: &Patient, readings: &[Reading], events: &[SimEvent]) -> anyhow::Result<Sent>;
    /// Readings per send.
    fn batch(&self) -> usize;
    /// True for targets that send hourly aggregates: each window is then generated from
    /// the start of its hour and sent whole, so a resent hour replaces the partial one.
    fn hourly(&self) -> bool {
        false
    }
    /// Whether the dense wristband streams can travel this way at all.
    fn carries_dense(&self) -> bool {
        true
    }
}

fn lines(encoding: Encoding, patient: &Patient, readings: &[Reading]) -> String {
    let mut buf = String::with_capacity(readings.len() * 110);
    let devices: HashMap<Device, String> =
        [Device::Cgm, Device::Watch, Device::Wristband].into_iter().map(|d| (d, patient.device_id(d))).collect();
    for r in readings {
        encoding.push(&mut buf, &patient.id, devices.get(&r.device).map_or("", String::as_str), r);
    }
    buf
}

/// One file per patient in a directory.
pub(crate) struct FileTarget {
    dir: PathBuf,
    encoding: Encoding,
    batch: usize,
    files: Mutex<HashMap<String, BufWriter<File>>>,
}

impl FileTarget {
    pub(crate) fn new(dir: &Path, encoding: Encoding, batch: usize) -> anyhow::Result<FileTarget> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(FileTarget { dir: dir.to_owned(), encoding, batch, files: Mutex::new(HashMap::new()) })
    }

    pub(crate) fn finish(&self) -> anyhow::Result<()> {
        let mut files = self.files.lock().map_err(|_| anyhow::anyhow!("a writer panicked"))?;
        for f in files.values_mut() {
            f.flush()?;
            f.get_ref().sync_all()?;
        }
        Ok(())
    }
}

impl Target for FileTarget {
    fn send(&self, patient: &Patient, readings: &[Reading], _: &[SimEvent]) -> anyhow::Result<Sent> {
        let body = lines(self.encoding, patient, readings);
        let mut files = self.files.lock().map_err(|_| anyhow::anyhow!("a writer panicked"))?;
        if !files.contains_key(&patient.id) {
            let path = self.dir.join(format!("{}.{}", patient.id, self.encoding.extension()));
            let mut f = BufWriter::new(File::create(&path).with_context(|| format!("creating {}", path.display()))?);
            f.write_all(self.encoding.header().as_bytes())?;
            files.insert(patient.id.clone(), f);
        }
        if let Some(f) = files.get_mut(&patient.id) {
            f.write_all(body.as_bytes())?;
        }
        Ok(Sent { accepted: readings.len() as u64, ..Sent::default() })
    }

    fn batch(&self) -> usize {
        self.batch
    }
}

/// The paths of a running server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Via {
    /// NDJSON to /api/v1/samples.
    Native,
    /// InfluxDB line protocol to /write.
    Line,
    /// Health Auto Export JSON (hourly aggregates, sleep, workouts) to
    /// /api/v1/ingest/health-auto-export.
    HealthAutoExport,
    /// A Nightscout uploader: glucose entries and uploader battery to /nightscout/{patient}.
    Nightscout,
    /// Native NDJSON published at QoS 1 to `<prefix>/<patient>/samples` on the broker of
    /// --mqtt-broker, which Vitals subscribes to (its MQTT client mode).
    Mqtt,
    /// Native NDJSON produced to --kafka-topic on --kafka-brokers, keyed by patient, which
    /// Vitals consumes (`[kafka]`): the glucose monitor's Event Hubs stream.
    Kafka,
}

/// A running server over one of its HTTP ingest paths.
pub(crate) struct HttpTarget {
    client: Client,
    via: Via,
    batch: usize,
    /// SHA-1 hex of the token, as Nightscout uploaders send it.
    api_secret: String,
}

impl HttpTarget {
    pub(crate) fn new(client: Client, token: &str, via: Via, batch: usize) -> HttpTarget {
        let api_secret = hex::encode(sha1::Sha1::digest(token.as_bytes()));
        HttpTarget { client, via, batch, api_secret }
    }

    fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<serde_json::Value> {
        let text = self.client.post_with(path, "application/json", body.to_string().as_bytes(), headers)?;
        serde_json::from_str(&text).with_context(|| format!("the answer to POST {path}"))
    }
}

impl Target for HttpTarget {
    fn send(&self, patient: &Patient, readings: &[Reading], events: &[SimEvent]) -> anyhow::Result<Sent> {
        match self.via {
            Via::Native => {
                let body = lines(Encoding::Ndjson, patient, readings);
                let text = self.client.post("/api/v1/samples", "application/x-ndjson", body.as_bytes())?;
                let v: serde_json::Value = serde_json::from_str(&text).context("the server's answer")?;
                let accepted = v["accepted"].as_u64().unwrap_or(0);
                let rejected = v["rejected"].as_array().map_or(0, |r| r.len() as u64);
                Ok(Sent { accepted, rejected, skipped: 0 })
            }
            Via::Line => {
                let body = lines(Encoding::Line, patient, readings);
                let n = readings.len() as u64;
                match self.client.post("/write?db=vitals&precision=ms", "text/plain", body.as_bytes()) {
                    Ok(_) => Ok(Sent { accepted: n, ..Sent::default() }),
                    Err(e) => {
                        // A partial write (400) keeps the good lines and says how many dropped.
                        let msg = format!("{e:#}");
                        let dropped = msg
                            .split("dropped=")
                            .nth(1)
                            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                            .and_then(|s| s.parse::<u64>().ok());
                        match dropped {
                            Some(d) => Ok(Sent { accepted: n.saturating_sub(d), rejected: d, skipped: 0 }),
                            None => Err(e),
                        }
                    }
                }
            }
            Via::HealthAutoExport => {
                // Some phones send 12-hour dates with a narrow no-break space: half the
                // patients do here.
                let twelve = patient.id.bytes().map(u32::from).sum::<u32>() % 2 == 1;
                let p = vitals_sim::health_auto_export(readings, events, twelve);
                if p.carried == 0 && events.is_empty() {
                    return Ok(Sent { skipped: p.skipped, ..Sent::default() });
                }
                let path = format!("/api/v1/ingest/health-auto-export?patient={}", url_escape(&patient.id));
                let v = self.post_json(&path, &p.body, &[])?;
                let rejected = v["rejected"].as_array().map_or(0, |r| r.len() as u64);
                // Hourly sums and Min/Avg/Max stand for many readings: count what was carried.
                Ok(Sent { accepted: p.carried.saturating_sub(rejected), rejected, skipped: p.skipped })
            }
            Via::Mqtt | Via::Kafka => bail!("MQTT and Kafka go through a broker, not this server"),
            Via::Nightscout => {
                let (entries, status) = vitals_sim::nightscout(readings, &patient.device_id(Device::Cgm));
                let base = format!("/nightscout/{}/api/v1", url_escape(&patient.id));
                let headers = [("api-secret", self.api_secret.as_str())];
                let mut sent = Sent { skipped: entries.skipped, ..Sent::default() };
                for (what, p) in [("entries", entries), ("devicestatus", status)] {
                    if p.carried == 0 {
                        continue;
                    }
                    let v = self.post_json(&format!("{base}/{what}"), &p.body, &headers)?;
                    let stored = v.as_array().map_or(0, |a| a.len() as u64);
                    if what == "entries" {
                        sent.accepted += stored;
                        sent.rejected += p.carried.saturating_sub(stored);
                    } else {
                        sent.accepted += p.carried;
                    }
                }
                Ok(sent)
            }
        }
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn hourly(&self) -> bool {
        self.via == Via::HealthAutoExport
    }

    fn carries_dense(&self) -> bool {
        matches!(self.via, Via::Native | Via::Line)
    }
}

/// Messages published and acknowledged so far, and the connection's failure if any.
#[derive(Default)]
struct AckState {
    published: u64,
    acked: u64,
    failed: Option<String>,
}

type Acks = std::sync::Arc<(Mutex<AckState>, Condvar)>;

/// Devices publishing native NDJSON at QoS 1 to `<prefix>/<patient>/samples` on a broker;
/// a send returns once the broker has acknowledged every message.
pub(crate) struct MqttTarget {
    client: rumqttc::Client,
    prefix: String,
    batch: usize,
    /// Signalled on each acknowledgement.
    acks: Acks,
}

impl MqttTarget {
    pub(crate) fn connect(broker: &str, prefix: &str, client_id: &str, batch: usize) -> anyhow::Result<MqttTarget> {
        let (host, port) = broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .with_context(|| format!("--mqtt-broker {broker:?} must be host:port"))?;
        let mut opts = rumqttc::MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        let acks: Acks = std::sync::Arc::new((Mutex::new(AckState::default()), Condvar::new()));
        let a = acks.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                let (lock, cv) = &*a;
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        if let Ok(mut g) = lock.lock() {
                            g.acked += 1;
                        }
                        cv.notify_all();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Ok(mut g) = lock.lock() {
                            g.failed = Some(e.to_string());
                        }
                        cv.notify_all();
                        return;
                    }
                }
            }
        });
        Ok(MqttTarget { client, prefix: prefix.to_owned(), batch, acks })
    }
}

impl Target for MqttTarget {
    fn send(&self, patient: &Patient, readings: &[Reading], _: &[SimEvent]) -> anyhow::Result<Sent> {
        let body = lines(Encoding::Ndjson, patient, readings);
        let topic = format!("{}/{}/samples", self.prefix, patient.id);
        let (lock, cv) = &*self.acks;
        let target = {
            let mut g = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            g.published += 1;
            g.published
        };
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, body.into_bytes()).context("mqtt publish")?;
        let g = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (g, timeout) = cv
            .wait_timeout_while(g, Duration::from_secs(60), |g| g.acked < target && g.failed.is_none())
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(e) = &g.failed {
            bail!("mqtt connection: {e}");
        }
        if timeout.timed_out() {
            bail!("the broker did not acknowledge within 60 s");
        }
        Ok(Sent { accepted: readings.len() as u64, ..Sent::default() })
    }

    fn batch(&self) -> usize {
        self.batch
    }
}

/// A gateway producing native NDJSON to a Kafka topic (one message per send, keyed by
/// patient); a send returns once the cluster acknowledged it (`acks=all`).
pub(crate) struct KafkaTarget {
    producer: vitals_kafka::KafkaProducer,
    topic: String,
    batch: usize,
}

impl KafkaTarget {
    pub(crate) fn connect(brokers: &str, topic: &str, batch: usize) -> anyhow::Result<KafkaTarget> {
        let cfg = vitals_kafka::KafkaConfig {
            brokers: brokers.to_owned(),
            client_id: "vitals-simulate".into(),
            ..vitals_kafka::KafkaConfig::default()
        };
        Ok(KafkaTarget { producer: vitals_kafka::KafkaProducer::new(&cfg)?, topic: topic.to_owned(), batch })
    }
}

impl Target for KafkaTarget {
    fn send(&self, patient: &Patient, readings: &[Reading], _: &[SimEvent]) -> anyhow::Result<Sent> {
        let body = lines(Encoding::Ndjson, patient, readings);
        self.producer.send(&self.topic, &[(Some(patient.id.as_bytes()), body.as_bytes())])?;
        Ok(Sent { accepted: readings.len() as u64, ..Sent::default() })
    }

    fn batch(&self) -> usize {
        self.batch
    }
}
