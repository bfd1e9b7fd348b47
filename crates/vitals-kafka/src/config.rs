//! The `[kafka]` section: which cluster, which topics in which format, how to sign in; and
//! the librdkafka properties it turns into.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// Kafka (or Azure Event Hubs, which speaks the Kafka protocol) as a way in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub enabled: bool,
    /// `host:port[,host:port...]` of the cluster (Event Hubs: `<namespace>.servicebus.windows.net:9093`).
    pub brokers: String,
    /// The consumer group: its committed offsets are where Vitals resumes; several Vitals
    /// nodes in one group share the partitions.
    pub group_id: String,
    pub client_id: String,
    /// Topics of Vitals' own samples (JSON, NDJSON or CSV, sniffed per message; each sample
    /// names its patient): readings and device telemetry alike.
    pub topics: Vec<String>,
    /// Topics of InfluxDB line protocol (Telegraf's Kafka output; `[line_protocol]` rules apply).
    pub line_protocol_topics: Vec<String>,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (Event Hubs).
    pub security_protocol: SecurityProtocol,
    /// `PLAIN` (Event Hubs, Confluent Cloud), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    /// Event Hubs: `$ConnectionString`.
    pub sasl_username: String,
    /// Event Hubs: the namespace's connection string. Prefer `VITALS_KAFKA_SASL_PASSWORD`.
    pub sasl_password: String,
    /// PEM file of the CA certificates that may sign the brokers'; empty: the system's.
    pub ca_file: PathBuf,
    /// Where a group without committed offsets starts: `earliest` (everything the topic
    /// still holds) or `latest` (only what comes from now on).
    pub start_from: StartFrom,
    /// Messages taken to durability together before one commit.
    pub batch_messages: usize,
    /// Further librdkafka properties, as they are named there (`session.timeout.ms`, ...);
    /// they override the ones above.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: "127.0.0.1:9092".into(),
            group_id: "vitals".into(),
            client_id: "vitals".into(),
            topics: Vec::new(),
            line_protocol_topics: Vec::new(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: "PLAIN".into(),
            sasl_username: String::new(),
            sasl_password: String::new(),
            ca_file: PathBuf::new(),
            start_from: StartFrom::Earliest,
            batch_messages: 500,
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// How the messages of a topic are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicFormat {
    /// Vitals' own samples, sniffed per message.
    Native,
    /// InfluxDB line protocol.
    LineProtocol,
}

impl KafkaConfig {
    /// What is wrong with the section, one line per problem (empty when it can work).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        if self.brokers.trim().is_empty() {
            p.push("kafka.brokers is empty".to_owned());
        }
        if self.group_id.trim().is_empty() {
            p.push("kafka.group_id is empty: offsets are committed for a consumer group".to_owned());
        }
        if self.topics.is_empty() && self.line_protocol_topics.is_empty() {
            p.push("kafka: no topics (kafka.topics or kafka.line_protocol_topics)".to_owned());
        }
        for t in self.topics.iter().filter(|t| self.line_protocol_topics.contains(t)) {
            p.push(format!("kafka: topic {t:?} is in both kafka.topics and kafka.line_protocol_topics"));
        }
        if self.batch_messages == 0 {
            p.push("kafka.batch_messages must be positive".to_owned());
        }
        if self.security_protocol.sasl() && self.sasl_username.is_empty() {
            p.push(format!("kafka.security_protocol {} needs kafka.sasl_username", self.security_protocol.as_str()));
        }
        p
    }

    /// The format of `topic`'s messages.
    pub fn format_of(&self, topic: &str) -> TopicFormat {
        if self.line_protocol_topics.iter().any(|t| t == topic) {
            TopicFormat::LineProtocol
        } else {
            TopicFormat::Native
        }
    }

    /// Every topic subscribed to.
    pub fn all_topics(&self) -> Vec<&str> {
        self.topics.iter().chain(&self.line_protocol_topics).map(String::as_str).collect()
    }

    /// The consumer's librdkafka properties: offsets are neither stored nor committed by
    /// librdkafka on its own; Vitals commits them after what was read is durable.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = self.connection_config();
        let reset = match self.start_from {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        c.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Where the cluster is and how to sign in (consumers and producers alike).
    pub(crate) fn connection_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("security.protocol", self.security_protocol.as_str());
        if self.security_protocol.sasl() {
            c.set("sasl.mechanism", &self.sasl_mechanism)
                .set("sasl.username", &self.sasl_username)
                .set("sasl.password", &self.sasl_password);
        }
        if self.security_protocol.tls() && !self.ca_file.as_os_str().is_empty() {
            c.set("ssl.ca.location", self.ca_file.to_string_lossy());
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hubs_settings_become_sasl_over_tls() {
        let cfg = KafkaConfig {
            enabled: true,
            brokers: "ns.servicebus.windows.net:9093".into(),
            topics: vec!["readings".into()],
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_username: "$ConnectionString".into(),
            sasl_password: "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s".into(),
            ..KafkaConfig::default()
        };
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let c = cfg.client_config();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(c.get("sasl.username"), Some("$ConnectionString"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
    }

    #[test]
    fn problems_are_named() {
        let cfg = KafkaConfig {
            enabled: true,
            group_id: String::new(),
            topics: vec!["a".into()],
            line_protocol_topics: vec!["a".into()],
            security_protocol: SecurityProtocol::SaslSsl,
            ..KafkaConfig::default()
        };
        let p = cfg.problems().join("\n");
        assert!(p.contains("group_id"), "{p}");
        assert!(p.contains("in both"), "{p}");
        assert!(p.contains("sasl_username"), "{p}");
        assert!(KafkaConfig::default().problems().is_empty());
        assert_eq!(cfg.format_of("a"), TopicFormat::LineProtocol);
    }
}
