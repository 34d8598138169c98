//! The names of a pool's keys. Every key of pool `P` is
//! `{prefix}:{P}:…`: the braces are a Redis Cluster hash tag, so all of a
//! pool's keys live in one slot and one script may touch them all. The one
//! key outside a pool is the registry of live pools, where hosts look for
//! work.

/// The prefix of every key this crate writes.
pub(crate) const PREFIX: &str = "pool-runtime";

/// The consumer group every host of a pool reads its task stream in.
pub(crate) const GROUP: &str = "hosts";

/// The sorted set of live pools: member the pool id, score the time (ms
/// since the epoch) until which its driver vouches for it.
pub(crate) fn registry() -> String {
    format!("{PREFIX}:pools")
}

/// The keys of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// The pool's id, as in its keys.
    pub(crate) id: String,
    base: String,
}

impl Keys {
    pub(crate) fn new(id: &str) -> Keys {
        Keys {
            id: id.to_string(),
            base: format!("{PREFIX}:{{{id}}}"),
        }
    }

    /// A hash: `hello` (the greeting: code, init, arguments), `config` (the
    /// settings hosts run it with), `closing` once the driver ends it.
    pub(crate) fn hello(&self) -> String {
        format!("{}:hello", self.base)
    }
    /// The stream of batches, read by the hosts' consumer group.
    pub(crate) fn tasks(&self) -> String {
        format!("{}:tasks", self.base)
    }
    /// The stream of outcomes, read by the driver alone.
    pub(crate) fn replies(&self) -> String {
        format!("{}:replies", self.base)
    }
    /// A hash of the hosts serving the pool: host id → what it runs.
    pub(crate) fn hosts(&self) -> String {
        format!("{}:hosts", self.base)
    }
    /// A hash of the hosts that would not serve the pool: host id → why.
    pub(crate) fn refused(&self) -> String {
        format!("{}:refused", self.base)
    }
    /// The stream of inputs quarantined after too many deliveries.
    pub(crate) fn dead(&self) -> String {
        format!("{}:dead", self.base)
    }
    /// Host `host`'s inbox: the broadcasts it runs on each of its workers.
    pub(crate) fn inbox(&self, host: &str) -> String {
        format!("{}:inbox:{host}", self.base)
    }
    /// What a host's lease key starts with; its id follows.
    /// A `SCAN` pattern for every key of the pool.
    pub(crate) fn pattern(&self) -> String {
        format!("{}:*", self.base)
    }

    /// Where each consumer (`host/n`) marks the entry it is running.
    pub(crate) fn mark_prefix(&self) -> String {
        format!("{}:mark:", self.base)
    }

    pub(crate) fn mark(&self, consumer: &str) -> String {
        format!("{}{consumer}", self.mark_prefix())
    }

    pub(crate) fn lease_prefix(&self) -> String {
        format!("{}:lease:", self.base)
    }
    /// Host `host`'s lease: present while the host is alive.
    pub(crate) fn lease(&self, host: &str) -> String {
        format!("{}{host}", self.lease_prefix())
    }
    /// The pool's keys that the driver keeps alive and deletes at the end
    /// (leases expire on their own; the dead-letter stream is kept).
    pub(crate) fn owned(&self) -> [String; 5] {
        [
            self.hello(),
            self.tasks(),
            self.replies(),
            self.hosts(),
            self.refused(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_pool_shares_one_hash_tag() {
        let k = Keys::new("ab12");
        for key in k.owned().iter().chain([&k.dead(), &k.lease("h1"), &k.inbox("h1"), &k.mark("h1/0")]) {
            assert!(key.starts_with("pool-runtime:{ab12}:"), "{key}");
        }
    }
}
