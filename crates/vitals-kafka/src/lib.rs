//! Kafka and Azure Event Hubs (which speaks the Kafka protocol) as a way in.
//!
//! A [`KafkaSource`] is a member of a consumer group on the configured topics. It reads a
//! batch, hands it to a [`Handler`] that returns once the batch is durable (or kept as dead
//! letters), and only then commits the offsets after it: acknowledged means durable here
//! too. Whatever fails, the group resumes from its last commit. What a message means (which
//! decoder, which patient) is the handler's business; this crate knows only Kafka.

mod config;
mod consumer;
mod producer;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{KafkaConfig, SecurityProtocol, StartFrom, TopicFormat};
pub use consumer::{ConsumerError, Handler, KafkaSource, Record};
pub use producer::{KafkaProducer, ProducerError};
