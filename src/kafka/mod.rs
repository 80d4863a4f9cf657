//! The one Kafka adapter: every librdkafka client keywatch makes is
//! configured here, by its role, and the topics it creates and the blocking
//! admin calls go through here too.
//!
//! A client's properties are laid in one order: the connection (brokers,
//! security) first, the role's defaults next, the user's `properties` (those
//! the role can take) after them, and last what the role needs to be correct
//! (a reader's group and start position, a writer's `acks`), which nothing
//! overrides.
//!
//! Which of the user's `[kafka] properties` a role takes:
//!
//! - the source's consumer: all of them (they are written for it);
//! - a reader of keywatch's own topics (changelog, feedback, findings): all
//!   but group membership and start position (`group.`,
//!   `partition.assignment`, `auto.`, `enable.auto.`, `session.`,
//!   `heartbeat.`, `max.poll.`), which belong to the source's group;
//! - a producer: those, and no consumer-only ones either (`fetch.`,
//!   `max.partition.fetch.`, `queued.`, `isolation.level`).
//!
//! An alert sink of type `kafka` has brokers and properties of its own
//! ([`for_sink`]); the traffic generator names only brokers
//! ([`for_brokers`]).

mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

pub use config::{KafkaConfig, SaslMechanism, SecurityProtocol};

use crate::secret::Secret;

/// What a client is for, which decides the user properties it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The source's consumer-group member.
    Source,
    /// A consumer of one of keywatch's own topics, outside the group.
    Reader,
    /// A producer.
    Producer,
}

/// Properties of the source's group: membership and where it starts.
const GROUP_ONLY: [&str; 7] = [
    "group.",
    "partition.assignment",
    "auto.",
    "enable.auto.",
    "session.",
    "heartbeat.",
    "max.poll.",
];

/// Properties a producer has no use for (librdkafka warns about each).
const CONSUMER_ONLY: [&str; 4] = [
    "fetch.",
    "max.partition.fetch.",
    "queued.",
    "isolation.level",
];

impl Role {
    /// What the role itself implies, whoever asks: a reader outside the
    /// group never commits offsets.
    fn implied(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Role::Reader => &[("enable.auto.commit", "false")],
            Role::Source | Role::Producer => &[],
        }
    }

    /// Whether a client of this role takes the user's property `name`.
    pub fn takes(self, name: &str) -> bool {
        let any = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
        match self {
            Role::Source => true,
            Role::Reader => !any(&GROUP_ONLY),
            Role::Producer => !any(&GROUP_ONLY) && !any(&CONSUMER_ONLY),
        }
    }
}

/// A client of `[kafka]`'s cluster for `role`: the connection, `defaults`,
/// the user's properties the role takes, then what the role implies
/// ([`Role::implied`]) and `fixed`.
pub fn client(
    cfg: &KafkaConfig,
    role: Role,
    defaults: &[(&str, String)],
    fixed: &[(&str, String)],
) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (k, v) in cfg.client_properties() {
        client.set(k, v);
    }
    for (k, v) in defaults {
        client.set(*k, v);
    }
    for (k, v) in &cfg.properties {
        if role.takes(k) {
            client.set(k, v);
        }
    }
    for (k, v) in role.implied() {
        client.set(*k, *v);
    }
    for (k, v) in fixed {
        client.set(*k, v);
    }
    client
}

/// A cluster named by an alert sink of type `kafka`: its brokers and its
/// librdkafka properties, plain and secret.
#[derive(Clone, Copy)]
pub struct Cluster<'a> {
    /// Bootstrap brokers.
    pub brokers: &'a str,
    /// Properties written for the sink's producer.
    pub properties: &'a BTreeMap<String, String>,
    /// Properties whose values are secret.
    pub secret_properties: &'a BTreeMap<String, Secret>,
}

/// A client of a `kafka` alert sink's cluster: its brokers and secret
/// properties always; its other properties (written for its producer) in
/// full for [`Role::Producer`], and only the connection's (`security.`,
/// `sasl.`, `ssl.`, `client.dns.lookup`, `broker.address.family`) for a
/// reader. `defaults` go before the sink's properties, what the role
/// implies and `fixed` after.
pub fn for_sink(
    sink: Cluster<'_>,
    role: Role,
    defaults: &[(&str, String)],
    fixed: &[(&str, String)],
) -> ClientConfig {
    let connection = |name: &str| {
        ["security.", "sasl.", "ssl."]
            .iter()
            .any(|p| name.starts_with(p))
            || name == "client.dns.lookup"
            || name == "broker.address.family"
    };
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", sink.brokers);
    for (k, v) in defaults {
        client.set(*k, v);
    }
    for (k, v) in sink.properties {
        if role == Role::Producer || connection(k) {
            client.set(k, v);
        }
    }
    for (k, v) in sink.secret_properties {
        client.set(k, v.expose());
    }
    for (k, v) in role.implied() {
        client.set(*k, *v);
    }
    for (k, v) in fixed {
        client.set(*k, v);
    }
    client
}

/// A client of a cluster named only by its brokers, with no security and
/// `settings` as given: the generator's producer (`keywatch gen --brokers`,
/// the demo's embedded broker).
pub fn for_brokers(brokers: &str, settings: &[(&str, String)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    for (k, v) in settings {
        client.set(*k, v);
    }
    client
}

/// Runs an admin future to completion on a runtime of its own, on a thread
/// of its own: callable from anywhere, a Tokio worker included.
pub fn block_on<F: std::future::Future + Send>(fut: F) -> anyhow::Result<F::Output>
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            Ok(tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime for the Kafka admin client")?
                .block_on(fut))
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the Kafka admin call panicked")))
    })
}

/// A topic keywatch keeps for itself (changelog, feedback), compacted.
pub struct OwnTopic<'a> {
    /// Its name.
    pub name: &'a str,
    /// The configuration key that names it, for messages.
    pub key: &'a str,
    /// Partitions to create it with.
    pub partitions: i32,
    /// Replication factor; -1 takes the broker's default.
    pub replication: i32,
    /// What to tell the user when it cannot be created.
    pub otherwise: &'a str,
}

/// Creates `topic` when it is missing: compacted where the broker allows
/// it, plain otherwise (a warning: it then grows until retention trims it).
pub fn ensure_topic(
    client: &ClientConfig,
    topic: &OwnTopic<'_>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        client.create().context("creating the Kafka admin client")?;
    let exists = admin
        .inner()
        .fetch_metadata(Some(topic.name), timeout)
        .map(|m| {
            m.topics().iter().any(|t| {
                t.name() == topic.name && t.error().is_none() && !t.partitions().is_empty()
            })
        })
        .unwrap_or(false);
    if exists {
        return Ok(());
    }
    let brokers = client.get("bootstrap.servers").unwrap_or_default();
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let new = || {
        NewTopic::new(
            topic.name,
            topic.partitions,
            TopicReplication::Fixed(topic.replication),
        )
    };
    let compacted = new().set("cleanup.policy", "compact");
    for (spec, what) in [(compacted, "compacted"), (new(), "without compaction")] {
        let results = block_on(admin.create_topics([&spec], &opts))?
            .with_context(|| format!("creating {} `{}` on {brokers}", topic.key, topic.name))?;
        match results.into_iter().next() {
            Some(Ok(_)) => {
                tracing::info!(topic = %topic.name, partitions = topic.partitions, "created {} {what}", topic.key);
                return Ok(());
            }
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::InvalidConfig))) if what == "compacted" => {
                tracing::warn!(topic = %topic.name, "the broker refuses cleanup.policy=compact for {}; it grows until its retention trims it", topic.key);
            }
            Some(Err((_, code))) => anyhow::bail!(
                "creating {} `{}` on {brokers}: {code} ({})",
                topic.key,
                topic.name,
                topic.otherwise
            ),
            None => anyhow::bail!("creating {} `{}`: no answer", topic.key, topic.name),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_takes_the_user_properties_it_can_use() {
        for (name, source, reader, producer) in [
            ("ssl.endpoint.identification.algorithm", true, true, true),
            ("socket.keepalive.enable", true, true, true),
            ("group.instance.id", true, false, false),
            ("auto.offset.reset", true, false, false),
            ("enable.auto.commit", true, false, false),
            ("session.timeout.ms", true, false, false),
            ("fetch.wait.max.ms", true, true, false),
            ("linger.ms", true, true, true),
        ] {
            assert_eq!(Role::Source.takes(name), source, "{name}");
            assert_eq!(Role::Reader.takes(name), reader, "{name}");
            assert_eq!(Role::Producer.takes(name), producer, "{name}");
        }
    }

    /// Every reader outside the group, of `[kafka]`'s cluster or a sink's,
    /// leaves offsets alone; the source's member commits them.
    #[test]
    fn a_reader_never_commits_offsets() {
        let cfg = KafkaConfig::default();
        assert_eq!(
            client(&cfg, Role::Reader, &[], &[]).get("enable.auto.commit"),
            Some("false")
        );
        assert_eq!(
            client(&cfg, Role::Source, &[], &[]).get("enable.auto.commit"),
            None
        );
        let (properties, secret_properties) = (BTreeMap::new(), BTreeMap::new());
        let sink = Cluster {
            brokers: "127.0.0.1:9092",
            properties: &properties,
            secret_properties: &secret_properties,
        };
        assert_eq!(
            for_sink(sink, Role::Reader, &[], &[]).get("enable.auto.commit"),
            Some("false")
        );
    }

    #[test]
    fn the_fixed_settings_win_and_the_user_overrides_defaults() {
        let mut cfg = KafkaConfig::default();
        cfg.properties
            .insert("fetch.wait.max.ms".into(), "250".into());
        cfg.properties
            .insert("auto.offset.reset".into(), "latest".into());
        let c = client(
            &cfg,
            Role::Reader,
            &[("fetch.wait.max.ms", "10".into())],
            &[("auto.offset.reset", "earliest".into())],
        );
        assert_eq!(c.get("fetch.wait.max.ms"), Some("250"));
        assert_eq!(
            c.get("auto.offset.reset"),
            Some("earliest"),
            "a reader of keywatch's own topics always starts at the beginning"
        );
        assert_eq!(c.get("bootstrap.servers"), Some(cfg.brokers.as_str()));
    }
}
