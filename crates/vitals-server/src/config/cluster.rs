//! `[cluster]`: several nodes on NATS JetStream (the durable log) and PostgreSQL (the
//! metadata and who owns which patient bucket). Off by default: one node, one disk.

use serde::{Deserialize, Serialize};
use vitals_core::DurationMs;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub enabled: bool,
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`, `.`).
    pub node: String,
    /// Where this node's HTTP listener is reached by others (shown in `/healthz`).
    pub advertise: String,
    /// NATS servers (`nats://host:port`), any of the cluster's.
    pub nats: Vec<String>,
    /// The JetStream stream of accepted samples.
    pub stream: String,
    /// Copies of every message (3: the loss of one NATS server loses nothing).
    pub replicas: usize,
    /// Patient buckets, the unit of ownership (fixed for a stream's life).
    pub buckets: u16,
    /// PostgreSQL connection string (`postgres://user:pass@host/db` or `host=... user=...`);
    /// better given in the environment as `VITALS_CLUSTER_POSTGRES`.
    pub postgres: String,
    /// The PostgreSQL schema of Vitals' tables.
    pub schema: String,
    /// A bucket's lease: a dead node's buckets move to the others after this.
    pub lease_ttl: DurationMs,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            node: String::new(),
            advertise: String::new(),
            nats: vec!["nats://127.0.0.1:4222".into()],
            stream: "VITALS_SAMPLES".into(),
            replicas: 3,
            buckets: 64,
            postgres: String::new(),
            schema: "vitals".into(),
            lease_ttl: DurationMs(10_000),
        }
    }
}

impl ClusterConfig {
    /// What is wrong with the section, each problem a sentence (`lake_url`: `[lake] url`;
    /// `vault_key_given`: `vault.key_file` or `VITALS_VAULT_KEY` is set).
    pub fn problems(&self, lake_url: &str, vault_key_given: bool) -> Vec<String> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        if !vault_key_given {
            out.push(
                "cluster mode needs the identity vault's key given (vault.key_file or VITALS_VAULT_KEY), the same on every node: \
                 the vault is shared, and a key made up by each node would not open the others' records"
                    .into(),
            );
        }
        if lake_url.starts_with("file:") {
            out.push(
                "cluster mode's lake.url must be object storage every node reaches (s3://, az://, gs://), not file:// (docs/cluster.md)"
                    .into(),
            );
        }
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid_name(&self.node) {
            out.push(format!(
                "cluster.node {:?} must be a name of letters, digits, -, _ and . (unique per node)",
                self.node
            ));
        }
        if self.nats.is_empty() || self.nats.iter().any(|u| !u.starts_with("nats://") && !u.starts_with("tls://")) {
            out.push("cluster.nats must list servers as nats://host:port".into());
        }
        if self.postgres.is_empty() {
            out.push("cluster.postgres (or VITALS_CLUSTER_POSTGRES) must name the PostgreSQL database".into());
        }
        if !(1..=5).contains(&self.replicas) {
            out.push("cluster.replicas must be 1 to 5 (JetStream's limit)".into());
        }
        if self.buckets == 0 || self.buckets > 4096 {
            out.push("cluster.buckets must be 1 to 4096".into());
        }
        if !valid_name(&self.schema) || self.schema.contains(['-', '.']) || self.schema.to_lowercase() != self.schema {
            out.push(format!("cluster.schema {:?} must be lower-case letters, digits and _", self.schema));
        }
        if self.lease_ttl.as_ms() < 1000 {
            out.push("cluster.lease_ttl must be at least 1s".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::{Config, Overrides};

    fn load(env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_parts(None, &env, &Overrides::default())
    }

    #[test]
    fn a_cluster_node_needs_a_name_nats_postgres_and_a_shared_lake_bucket() {
        let err = load(&[("VITALS_CLUSTER_ENABLED", "true"), ("VITALS_CLUSTER_NATS", "[]")]).expect_err("incomplete");
        let text = err.to_string();
        for needed in ["cluster.node", "cluster.nats", "cluster.postgres"] {
            assert!(format!("{err:#}").contains(needed), "{needed} in {text}");
        }
        let ok = [
            ("VITALS_CLUSTER_ENABLED", "true"),
            ("VITALS_CLUSTER_NODE", "node-1"),
            ("VITALS_CLUSTER_NATS", "[\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]"),
            ("VITALS_CLUSTER_POSTGRES", "postgres://vitals@db/vitals"),
            ("VITALS_CLUSTER_LEASE_TTL", "5s"),
            ("VITALS_VAULT_KEY_FILE", "/etc/vitals/vault.key"),
        ];
        let c = load(&ok).expect("valid");
        assert_eq!((c.cluster.nats.len(), c.cluster.lease_ttl.as_ms(), c.cluster.buckets), (2, 5000, 64));
        let err = load(&ok[..ok.len() - 1]).expect_err("no vault key");
        assert!(format!("{err:#}").contains("VITALS_VAULT_KEY"), "{err:#}");
        let mut with_lake = ok.to_vec();
        with_lake.push(("VITALS_LAKE_URL", "s3://bucket/lake"));
        assert!(load(&with_lake).is_ok(), "the nodes share one bucket");
        let mut with_dir = ok.to_vec();
        with_dir.push(("VITALS_LAKE_URL", "file:///var/lib/vitals/lake"));
        let err = load(&with_dir).expect_err("a directory is no node's shared lake");
        assert!(format!("{err:#}").contains("lake.url"), "{err:#}");
        assert!(load(&[("VITALS_LAKE_URL", "s3://bucket/lake")]).is_ok(), "one node tiers to a bucket as before");
    }
}
