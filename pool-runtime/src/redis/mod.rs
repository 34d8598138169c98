//! The Redis Streams backend (feature `redis`): the same pool, its workers
//! on hosts anywhere.
//!
//! `Pool::builder().redis(url)` builds a pool whose batches go through a
//! Redis stream to *hosts*: copies of the same program started in worker
//! mode with [`HOST_ENV`] set to the Redis URL (and [`HOST_WORKERS_ENV`],
//! optionally, to how many workers each runs). Each host serves the pool
//! with a local pool of its own (a fork server and forked workers that build
//! their state once), so a worker crash is handled by its host at once; a
//! host's death is found by its lease, and what it held goes to the others.
//!
//! - `transport.rs`: the driver's side, a transport whose workers are
//!   relays to and from Redis; the jobs layer above is the local one,
//!   unchanged.
//! - `relay.rs`: the driver's threads: a relay per slot, the reply
//!   reader, the keeper of the pool's keys.
//! - `shared.rs`: what those threads know in common: the batches pending,
//!   each item's first outcome (a second is dropped and counted);
//!   `depth.rs`: how many batches are in flight, sized to the hosts'
//!   workers and to how long a batch runs.
//! - `host.rs`: a host, its sessions (one per pool it serves) and their
//!   heartbeats; `host/consumer.rs`: taking, reclaiming, splitting and
//!   quarantining entries; `host/live.rs`: what says a lease is alive.
//! - `local.rs`: a host's own local pool, and running entries on it.
//! - `wire.rs`: the entries' fields, the settings hosts run with, and the
//!   Lua scripts that make each step that must be atomic one step.
//! - `keys.rs`: the key names, under one hash-tagged namespace per pool.
//! - `conn.rs`: a connection that comes back after a cut, to one server
//!   or to a Redis Cluster.

mod conn;
mod depth;
pub(crate) mod host;
mod keys;
mod local;
pub(crate) mod relay;
mod shared;
pub(crate) mod transport;
mod wire;

use std::time::{Duration, Instant};

pub use host::{CA_ENV, HOST_ENV, HOST_SPIN_ENV, HOST_WORKERS_ENV};

use crate::error::{Error, ErrorKind};

/// The start method of a pool on Redis ([`PoolBuilder::redis`](crate::PoolBuilder::redis)):
/// where Redis is, and how hosts are trusted and waited for.
#[derive(Debug, Clone)]
pub struct Redis {
    pub(crate) url: String,
    pub(crate) lease: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) min_hosts: usize,
    pub(crate) host_wait: Duration,
    pub(crate) key_ttl: Duration,
    pub(crate) patience: Duration,
    /// A CA certificate (PEM) to trust for `rediss://`, over the system's.
    pub(crate) ca: Option<std::path::PathBuf>,
}

impl Redis {
    pub(crate) fn new(url: String) -> Redis {
        Redis {
            url,
            lease: Duration::from_secs(2),
            max_deliveries: 3,
            min_hosts: 1,
            host_wait: Duration::from_secs(30),
            key_ttl: Duration::from_secs(30),
            patience: Duration::from_secs(30),
            ca: None,
        }
    }
}

/// Where `url` is: over TLS for `rediss://` (feature `redis-tls`),
/// trusting `ca` (a PEM file) if given, else the system's certificates; a
/// single server or a cluster (see `conn.rs`).
pub(crate) fn endpoint(url: &str, ca: Option<&std::path::Path>) -> Result<conn::Endpoint, String> {
    if !url.starts_with("rediss://") {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        return Ok(conn::Endpoint::new(client, url, None));
    }
    #[cfg(feature = "redis-tls")]
    {
        // rustls needs a crypto provider; ring, unless the program chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root_cert = match ca {
            Some(path) => Some(
                std::fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: root_cert.clone(),
        };
        let client = redis::Client::build_with_tls(url, certs).map_err(|e| e.to_string())?;
        Ok(conn::Endpoint::new(client, url, root_cert))
    }
    #[cfg(not(feature = "redis-tls"))]
    {
        let _ = ca;
        Err("a rediss:// URL needs pool-runtime's `redis-tls` feature".into())
    }
}

/// A random pool id: 16 hex digits.
fn pool_id() -> String {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let t = wire::now_ms() ^ u64::from(std::process::id()) << 40;
        bytes = t.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `build` needs from Redis: a connection now (a wrong password, an
/// unreachable server fail here, in Redis's words), the pool published,
/// and its first hosts ready.
pub(crate) fn connect(
    redis: &Redis,
    hello: Vec<u8>,
    config: wire::HostConfig,
    (max_frame, relays): (usize, usize),
) -> Result<transport::RedisTransport, Error> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::Init(format!("Redis at {}: {what}: {e}", redact(&redis.url))))
    };
    let endpoint = endpoint(&redis.url, redis.ca.as_deref()).map_err(|e| fail("bad URL", &e))?;
    let mut conn = conn::Conn::open(&endpoint, Duration::from_secs(2))
        .map_err(|e| fail("cannot connect", &e))?;
    let id = pool_id();
    let shared = std::sync::Arc::new(shared::Shared::new(
        keys::Keys::new(&id),
        endpoint,
        (redis.patience, redis.key_ttl, max_frame, redis.lease, redis.host_wait),
        (hello, config.to_text()),
        relays,
    ));
    shared
        .publish(&mut conn)
        .map_err(|e| fail("cannot publish the pool", &e))?;
    let transport = transport::RedisTransport::start(shared.clone())
        .map_err(|e| fail("cannot start the relays", &e))?;
    // `transport` deletes the pool's keys if this fails.
    wait_for_hosts(&mut conn, &shared.keys, redis).map_err(|why| {
        Error::new(ErrorKind::Init(format!("Redis pool {id}: {why}")))
    })?;
    // The relays' depth for the hosts that came; the keeper follows those after.
    let _ = shared.live_hosts(&mut conn);
    Ok(transport)
}

/// Waits until `min_hosts` hosts serve the pool. Fails at the deadline,
/// or at once when hosts refused it and none serves it.
fn wait_for_hosts(conn: &mut conn::Conn, k: &keys::Keys, redis: &Redis) -> Result<(), String> {
    let deadline = Instant::now() + redis.host_wait;
    let mut refused_since: Option<Instant> = None;
    loop {
        let serving: usize = conn
            .run(redis::cmd("HLEN").arg(k.hosts()))
            .map_err(|e| e.to_string())?;
        if serving >= redis.min_hosts {
            return Ok(());
        }
        let refused: Vec<(String, String)> = conn
            .run(redis::cmd("HGETALL").arg(k.refused()))
            .map_err(|e| e.to_string())?;
        if !refused.is_empty() && serving == 0 {
            // Another host may yet say yes; not for long.
            let since = *refused_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(500) {
                let (host, why) = &refused[0];
                return Err(format!("host {host} refused it: {why}"));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{serving} of the {} hosts it needs joined within {:?}: start hosts with {HOST_ENV}={} (see `pool_runtime::redis`)",
                redis.min_hosts,
                redis.host_wait,
                redact(&redis.url)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The URL without its password (`user:password@`, or `pass=` in the
/// query of a `redis+unix://` URL), for messages.
fn redact(url: &str) -> String {
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let auth = &url[scheme + 3..at];
            let user = auth.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    };
    if let Some(q) = out.find('?') {
        let query: Vec<String> = out[q + 1..]
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some(("pass" | "password", _)) => format!("{}=***", kv.split('=').next().unwrap_or("")),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{}?{}", &out[..q], query.join("&"));
    }
    out
}

pub(crate) use wire::HostConfig;

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(super::redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(super::redact("redis://h:1"), "redis://h:1");
        assert_eq!(
            super::redact("redis+unix:///s.sock?db=1&pass=secret"),
            "redis+unix:///s.sock?db=1&pass=***"
        );
        assert_eq!(super::pool_id().len(), 16);
    }
}
