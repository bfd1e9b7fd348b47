//! Where accepted samples go to become durable: the store's write-ahead log on one node,
//! the replicated log in cluster mode (`cluster::publisher`). Either way `done` runs once
//! the samples are durable, or with why they are not; a full queue refuses at once.
//! Events (workouts, sleep, treatments) take the same road through [`EventSink`]: the
//! event store on one node, the replicated log in cluster mode (every node's tail puts
//! them in its own event store).

use vitals_core::{Event, Sample};
use vitals_storage::event_store::EventStore;
use vitals_storage::{Store, StoreError};

/// Runs once a write is durable (its position in the log) or failed.
pub type Done = Box<dyn FnOnce(Result<u64, StoreError>) + Send>;

/// The durable write path the pipeline hands samples to.
pub trait SampleSink: Send + Sync {
    fn submit(&self, samples: Vec<Sample>, done: Done) -> Result<(), StoreError>;
}

impl SampleSink for Store {
    fn submit(&self, samples: Vec<Sample>, done: Done) -> Result<(), StoreError> {
        Store::submit(self, samples, done)
    }
}

/// Where accepted events go to become durable. Blocks until they are (call it off the
/// async workers).
pub trait EventSink: Send + Sync {
    fn put_events(&self, events: Vec<Event>) -> Result<(), String>;
}

impl EventSink for EventStore {
    fn put_events(&self, events: Vec<Event>) -> Result<(), String> {
        self.put(events).map_err(|e| e.to_string())
    }
}
