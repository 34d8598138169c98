//! One connection to Redis that comes back after a cut: a command that
//! fails on the connection (not on what Redis answered) is retried on a new
//! one, with back-off, until a deadline; then its error is returned.
//!
//! The same connection serves a Redis Cluster: the URL names any of its
//! nodes, and the first `MOVED` answer (a key another node holds) turns
//! the [`Endpoint`], for every connection of this process, into the `redis`
//! crate's cluster client, which routes each command by its key's slot.
//! Every key of a pool shares one slot (its hash tag), so a script or a
//! pipeline of one pool's keys runs on one node, as on a single server.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection, ClusterPipeline};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    cmd, Client, Cmd, Connection, ConnectionLike, ErrorKind, FromRedisValue, RedisError, RedisResult, ToRedisArgs,
    Value,
};

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How long a connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Blocking reads wait at most 200 ms in Redis; an answer later than this
/// is a connection that is gone.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Redis is: one server, or a Redis Cluster (known once a node
/// answered `MOVED`). Clones share what they learnt.
#[derive(Clone)]
pub(crate) struct Endpoint {
    client: Client,
    url: String,
    /// The CA certificate (PEM) a `rediss://` cluster is trusted with.
    #[cfg_attr(not(feature = "redis-tls"), allow(dead_code))]
    ca: Option<Vec<u8>>,
    cluster: Arc<OnceLock<ClusterClient>>,
    /// Whether Redis lets this process's sends go unanswered (`CLIENT
    /// REPLY SKIP`; an ACL may refuse it), known once one was sent.
    quiet: Arc<OnceLock<bool>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("cluster", &self.cluster.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// `client` reaches `url` (with `ca`, the PEM it trusts for TLS).
    pub(crate) fn new(client: Client, url: &str, ca: Option<Vec<u8>>) -> Endpoint {
        Endpoint {
            client,
            url: url.to_string(),
            ca,
            cluster: Arc::new(OnceLock::new()),
            quiet: Arc::new(OnceLock::new()),
        }
    }

    /// Whether this process found Redis to be a cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// From now on, the cluster client seeded with this URL.
    fn become_cluster(&self) -> RedisResult<()> {
        if self.cluster.get().is_some() {
            return Ok(());
        }
        let b = ClusterClientBuilder::new(vec![self.url.as_str()])
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(IO_TIMEOUT);
        #[cfg(feature = "redis-tls")]
        let b = if self.url.starts_with("rediss://") {
            b.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: self.ca.clone(),
            })
        } else {
            b
        };
        let _ = self.cluster.set(b.build()?);
        Ok(())
    }

    fn connect(&self) -> RedisResult<Link> {
        if let Some(c) = self.cluster.get() {
            return Ok(Link::Cluster(Box::new(c.get_connection()?)));
        }
        let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Link::One(con))
    }
}

/// A connection to one server, or to a cluster.
enum Link {
    One(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Link {
    fn dyn_mut(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Link::One(c) => c,
            Link::Cluster(c) => &mut **c,
        }
    }
}

/// Commands sent together, in one round trip per node (one, when they are
/// a pool's keys): a `redis` pipeline on one server, a cluster pipeline on
/// a cluster. Built as a `redis::Pipeline` is.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pipe {
    commands: Vec<Cmd>,
    /// Whether each command's answer is left out of the result.
    ignored: Vec<bool>,
}

impl Pipe {
    pub(crate) fn new() -> Pipe {
        Pipe::default()
    }

    /// Starts command `name`.
    pub(crate) fn cmd(&mut self, name: &str) -> &mut Pipe {
        self.add_command(cmd(name))
    }

    pub(crate) fn add_command(&mut self, c: Cmd) -> &mut Pipe {
        self.commands.push(c);
        self.ignored.push(false);
        self
    }

    /// An argument of the last command.
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, a: T) -> &mut Pipe {
        if let Some(c) = self.commands.last_mut() {
            c.arg(a);
        }
        self
    }

    /// Leaves the last command's answer out of the result.
    pub(crate) fn ignore(&mut self) -> &mut Pipe {
        if let Some(i) = self.ignored.last_mut() {
            *i = true;
        }
        self
    }

    fn query<T: FromRedisValue>(&self, link: &mut Link) -> RedisResult<T> {
        match link {
            Link::One(con) => {
                let mut p = redis::pipe();
                for (c, &ignored) in self.commands.iter().zip(&self.ignored) {
                    p.add_command(c.clone());
                    if ignored {
                        p.ignore();
                    }
                }
                p.query(con)
            }
            Link::Cluster(con) => {
                let mut p = ClusterPipeline::new();
                for (c, &ignored) in self.commands.iter().zip(&self.ignored) {
                    p.add_command(c.clone());
                    if ignored {
                        p.ignore();
                    }
                }
                p.query(con)
            }
        }
    }
}

/// A Redis connection that reconnects (see the module docs).
pub(crate) struct Conn {
    endpoint: Endpoint,
    con: Option<Link>,
    /// How long a command may keep trying to reach Redis.
    patience: Duration,
    /// Answers to [`Conn::send`]'s commands not read yet (sent after the
    /// pipeline [`Conn::send_pipe`] wrote, if there is one).
    unread: usize,
    /// The pipeline [`Conn::send_pipe`] wrote, for [`Conn::recv_pipe`].
    ahead: Option<Ahead>,
}

/// A pipeline written by [`Conn::send_pipe`]: its answers not read yet, or
/// read (by a command that had to read past them, or on a cluster, where
/// it ran at once), kept for [`Conn::recv_pipe`].
enum Ahead {
    /// Answers of `before` earlier sends come first, then the pipeline's;
    /// `ignored` says which of those are left out of its result.
    Sent { before: usize, ignored: Vec<bool> },
    Read(RedisResult<Vec<Value>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("connected", &self.con.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether `e` is about the connection (retry on a new one), rather than
/// Redis refusing the command (say so).
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        // A restarted Redis answers so while it reads its data back.
        || e.code() == Some("LOADING")
        // A cluster electing a new primary, or moving the slot.
        || e.code() == Some("CLUSTERDOWN")
        || e.code() == Some("TRYAGAIN")
}

/// Whether Redis lets `con`'s user turn answers off (`CLIENT REPLY`),
/// which `con` has no answer to read for: `OFF` then `ON` gets one answer,
/// `ON`'s, where it may, and two refusals where it may not.
fn skips_answers(con: &mut Connection) -> RedisResult<bool> {
    let mut packed = Vec::new();
    cmd("CLIENT").arg("REPLY").arg("OFF").write_packed_command(&mut packed);
    cmd("CLIENT").arg("REPLY").arg("ON").write_packed_command(&mut packed);
    con.send_packed_command(&packed)?;
    match con.recv_response()? {
        Value::ServerError(_) => {
            con.recv_response()?;
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// An answer read with `recv_response`, Redis's error an `Err` (as a
/// command's query gives it).
fn answer(v: Value) -> RedisResult<Value> {
    match v {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(v),
    }
}

/// Whether `e` says another node of a cluster holds the key.
fn is_moved(e: &RedisError) -> bool {
    e.code() == Some("MOVED") || e.code() == Some("ASK")
}

impl Conn {
    /// Connects now: an unreachable server, a wrong password or an unknown
    /// user is an error at once, in Redis's words.
    pub(crate) fn open(endpoint: &Endpoint, patience: Duration) -> RedisResult<Conn> {
        let con = endpoint.connect()?;
        Ok(Conn {
            endpoint: endpoint.clone(),
            con: Some(con),
            patience,
            unread: 0,
            ahead: None,
        })
    }

    /// A connection that connects at its first command.
    pub(crate) fn lazy(endpoint: &Endpoint, patience: Duration) -> Conn {
        Conn {
            endpoint: endpoint.clone(),
            con: None,
            patience,
            unread: 0,
            ahead: None,
        }
    }

    /// Writes `cmd` without waiting for its answer: Redis sends none, if
    /// the user may ask for that (`CLIENT REPLY SKIP`, tried at the first
    /// send), or it is read, and dropped, before the next command's (the
    /// `redis` crate's parser takes about 4 µs an answer, measured: a
    /// tenth of a host's time per entry of `chunk_size(1)`). Nothing is
    /// retried: a command sent on a connection that breaks may be lost, so
    /// only what the protocol can do without goes this way. On a cluster
    /// it is run, its answer dropped.
    pub(crate) fn send(&mut self, command: &Cmd) {
        if self.con.is_none() {
            match self.endpoint.connect() {
                Ok(con) => self.con = Some(con),
                Err(_) => return,
            }
        }
        if matches!(self.con, Some(Link::One(_))) && self.endpoint.quiet.get().is_none() {
            self.drain();
            let Some(Link::One(con)) = self.con.as_mut() else {
                return;
            };
            match skips_answers(con) {
                Ok(quiet) => {
                    let _ = self.endpoint.quiet.set(quiet);
                }
                Err(_) => {
                    self.con = None;
                    return;
                }
            }
        }
        let quiet = self.endpoint.quiet.get() == Some(&true);
        match self.con.as_mut() {
            Some(Link::One(con)) => {
                // Built once: a mark is sent per entry.
                static SKIP: OnceLock<Vec<u8>> = OnceLock::new();
                let mut packed = Vec::new();
                if quiet {
                    packed.extend_from_slice(SKIP.get_or_init(|| cmd("CLIENT").arg("REPLY").arg("SKIP").get_packed_command()));
                }
                command.write_packed_command(&mut packed);
                if con.send_packed_command(&packed).is_err() {
                    self.con = None;
                    self.unread = 0;
                } else if !quiet {
                    self.unread += 1;
                }
            }
            Some(Link::Cluster(con)) => {
                if let Err(e) = command.query::<Value>(&mut **con) {
                    if is_connection_error(&e) {
                        self.con = None;
                    }
                }
            }
            None => {}
        }
    }

    /// Writes `pipe` without waiting for its answers, which
    /// [`Conn::recv_pipe`] reads; commands sent meanwhile are answered
    /// after it. Nothing is retried: a pipeline written on a connection that
    /// breaks is lost (its commands may or may not have run), and so
    /// is one whose answers a later command reads past and a later
    /// `send_pipe` overwrites. On a cluster it runs at once.
    pub(crate) fn send_pipe(&mut self, pipe: &Pipe) {
        self.drain();
        self.ahead = None;
        if self.con.is_none() {
            match self.endpoint.connect() {
                Ok(con) => self.con = Some(con),
                Err(e) => {
                    self.ahead = Some(Ahead::Read(Err(e)));
                    return;
                }
            }
        }
        let ahead = match self.con.as_mut() {
            Some(Link::One(con)) => {
                let mut packed = Vec::new();
                for c in &pipe.commands {
                    c.write_packed_command(&mut packed);
                }
                match con.send_packed_command(&packed) {
                    Ok(()) => Ahead::Sent {
                        before: std::mem::take(&mut self.unread),
                        ignored: pipe.ignored.clone(),
                    },
                    Err(e) => {
                        self.con = None;
                        self.unread = 0;
                        Ahead::Read(Err(e))
                    }
                }
            }
            Some(Link::Cluster(_)) => Ahead::Read(self.pipe::<Vec<Value>>(pipe)),
            None => unreachable!("connected above"),
        };
        self.ahead = Some(ahead);
    }

    /// The answers of the pipeline [`Conn::send_pipe`] wrote last, as
    /// [`Conn::pipe`] gives them; an error if it was lost, or none is left.
    pub(crate) fn recv_pipe<T: FromRedisValue>(&mut self) -> RedisResult<T> {
        let got = match self.ahead.take() {
            None => Err(RedisError::from((ErrorKind::Client, "no pipeline waits for its answers"))),
            Some(Ahead::Read(got)) => got,
            Some(Ahead::Sent { before, ignored }) => self.read_sent(before, &ignored),
        };
        Ok(redis::from_redis_value(Value::Array(got?))?)
    }

    /// Reads `before` answers of sends, then those of a pipeline of
    /// `ignored.len()` commands: its result, or the first error in it.
    fn read_sent(&mut self, before: usize, ignored: &[bool]) -> RedisResult<Vec<Value>> {
        let mut out = Vec::with_capacity(ignored.len());
        let mut failed = None;
        for (i, ignore) in std::iter::repeat_n(&true, before).chain(ignored).enumerate() {
            let Some(Link::One(con)) = self.con.as_mut() else {
                return Err(RedisError::from(std::io::Error::from(std::io::ErrorKind::NotConnected)));
            };
            match con.recv_response().and_then(answer) {
                Err(e) if is_connection_error(&e) || e.kind() == ErrorKind::Parse => {
                    self.con = None;
                    self.unread = 0;
                    return Err(e);
                }
                Err(e) if is_moved(&e) => {
                    // The next command goes the cluster's way.
                    if self.endpoint.become_cluster().is_ok() {
                        self.con = None;
                        self.unread = 0;
                        return Err(e);
                    }
                    failed.get_or_insert(e);
                }
                // A send's error is dropped, as it always is.
                Err(e) if i >= before => {
                    failed.get_or_insert(e);
                }
                Err(_) => {}
                Ok(v) if !*ignore => out.push(v),
                Ok(_) => {}
            }
        }
        failed.map_or(Ok(out), Err)
    }

    /// Reads the answers [`Conn::send`] left, and keeps those of the
    /// pipeline [`Conn::send_pipe`] wrote, if they come first.
    fn drain(&mut self) {
        if let Some(Ahead::Sent { before, ignored }) = self.ahead.take() {
            let got = self.read_sent(before, &ignored);
            self.ahead = Some(Ahead::Read(got));
        }
        while self.unread > 0 {
            let Some(Link::One(con)) = self.con.as_mut() else {
                self.unread = 0;
                return;
            };
            match con.recv_response().and_then(answer) {
                Err(e) if is_connection_error(&e) || e.kind() == ErrorKind::Parse => {
                    self.con = None;
                    self.unread = 0;
                }
                Err(e) if is_moved(&e) => {
                    // Lost, as a send may be; the next command goes the cluster's way.
                    if self.endpoint.become_cluster().is_ok() {
                        self.con = None;
                        self.unread = 0;
                    } else {
                        self.unread -= 1;
                    }
                }
                _ => self.unread -= 1,
            }
        }
    }

    /// Runs `cmd`, reconnecting as the module docs say. A command may thus
    /// run twice (it ran, then the answer was lost): the callers' commands
    /// are idempotent, or their effects de-duplicated by the driver.
    pub(crate) fn run<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        self.retrying(|con| cmd.query(con.dyn_mut()))
    }

    /// Runs `script` with `keys` and `args`, as [`Conn::run`] does.
    pub(crate) fn script<T: FromRedisValue>(
        &mut self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> RedisResult<T> {
        self.retrying(|con| {
            let mut call = script.prepare_invoke();
            for k in keys {
                call.key(*k);
            }
            for a in args {
                call.arg(*a);
            }
            call.invoke(con.dyn_mut())
        })
    }

    /// Runs `pipe`, as [`Conn::run`] does; its answers.
    pub(crate) fn pipe<T: FromRedisValue>(&mut self, pipe: &Pipe) -> RedisResult<T> {
        self.retrying(|con| pipe.query(con))
    }

    /// Runs `pipe`, as [`Conn::run`] does.
    pub(crate) fn retrying_pipe(&mut self, pipe: &Pipe) -> RedisResult<()> {
        self.pipe(pipe)
    }

    /// Every key matching `pattern`, whose keys share `key`'s slot: `SCAN`
    /// of the node that holds that slot, on a cluster.
    pub(crate) fn scan(&mut self, pattern: &str, key: &str) -> RedisResult<Vec<String>> {
        let at = match self.endpoint.is_cluster() {
            true => {
                let slot: u16 = self.run(cmd("CLUSTER").arg("KEYSLOT").arg(key))?;
                Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master))))
            }
            false => None,
        };
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut scan = cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let (next, found): (u64, Vec<String>) = if let Some(at) = &at {
                let v = self.retrying(|con| match con {
                    Link::Cluster(c) => c.route_command(&scan, at.clone()),
                    Link::One(c) => scan.query(c),
                })?;
                redis::from_redis_value(v)?
            } else {
                self.run(&scan)?
            };
            out.extend(found);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    fn retrying<T>(&mut self, mut f: impl FnMut(&mut Link) -> RedisResult<T>) -> RedisResult<T> {
        self.drain();
        let deadline = Instant::now() + self.patience;
        let mut backoff = Duration::from_millis(10);
        loop {
            let result = match self.con.as_mut() {
                Some(con) => f(con),
                None => self.endpoint.connect().and_then(|con| f(self.con.insert(con))),
            };
            match result {
                Err(e) if is_moved(&e) && !self.endpoint.is_cluster() => {
                    // A node of a cluster: from now on, the cluster's client.
                    self.endpoint.become_cluster()?;
                    self.con = None;
                }
                Err(e) if is_connection_error(&e) && Instant::now() < deadline => {
                    self.con = None;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    if is_connection_error(&e) {
                        self.con = None;
                    }
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    /// A `redis-server` on a unix socket in a temp dir, stopped on drop.
    /// A missing `redis-server` fails the test.
    struct Server {
        child: Child,
        dir: PathBuf,
    }

    impl Server {
        fn start(name: &str) -> Server {
            let dir = std::env::temp_dir().join(format!("pool-conn-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
                .arg(dir.join("s"))
                .current_dir(&dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is on PATH (.ci/run installs it)");
            let server = Server { child, dir };
            let until = Instant::now() + Duration::from_secs(10);
            while std::os::unix::net::UnixStream::connect(server.dir.join("s")).is_err() {
                assert!(Instant::now() < until, "redis-server did not come up");
                std::thread::sleep(Duration::from_millis(10));
            }
            server
        }

        fn conn(&self) -> Conn {
            self.conn_as("")
        }

        /// A connection with `query` after the URL (`?user=...&pass=...`).
        fn conn_as(&self, query: &str) -> Conn {
            let url = format!("redis+unix://{}{query}", self.dir.join("s").display());
            let endpoint = Endpoint::new(Client::open(url.as_str()).unwrap(), &url, None);
            Conn::open(&endpoint, Duration::from_secs(2)).unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn incr(key: &str) -> Cmd {
        let mut c = cmd("INCR");
        c.arg(key);
        c
    }

    #[test]
    fn a_pipeline_sent_ahead_is_answered_past_the_sends_around_it() {
        let server = Server::start("around");
        let mut conn = server.conn();
        conn.send(cmd("SET").arg("a").arg("x"));
        let mut pipe = Pipe::new();
        pipe.add_command(incr("n")).ignore();
        pipe.add_command(incr("n"));
        pipe.cmd("GET").arg("a");
        conn.send_pipe(&pipe);
        conn.send(cmd("SET").arg("b").arg("y"));
        let (n, a): (u64, String) = conn.recv_pipe().unwrap();
        assert_eq!((n, a.as_str()), (2, "x"));
        // The send after it is read before the next command's answer.
        assert_eq!(conn.run::<String>(cmd("GET").arg("b")).unwrap(), "y");
        // Nothing waits any more.
        assert!(conn.recv_pipe::<Vec<Value>>().is_err());
        assert_eq!(conn.run::<u64>(&incr("n")).unwrap(), 3);
    }

    #[test]
    fn a_command_run_before_a_pipeline_is_read_leaves_its_answers_kept() {
        let server = Server::start("kept");
        let mut conn = server.conn();
        let mut pipe = Pipe::new();
        pipe.add_command(incr("n"));
        conn.send_pipe(&pipe);
        assert_eq!(conn.run::<u64>(&incr("n")).unwrap(), 2);
        assert_eq!(conn.recv_pipe::<(u64,)>().unwrap(), (1,));
        // A second pipeline sent before the first is read replaces it.
        conn.send_pipe(&pipe);
        conn.send_pipe(&pipe);
        assert_eq!(conn.recv_pipe::<(u64,)>().unwrap(), (4,));
        assert_eq!(conn.run::<u64>(&incr("n")).unwrap(), 5);
    }

    #[test]
    fn a_refused_command_fails_its_pipeline_and_the_connection_stays_in_step() {
        let server = Server::start("refused");
        let mut conn = server.conn();
        conn.run::<()>(cmd("SET").arg("s").arg("text")).unwrap();
        let mut pipe = Pipe::new();
        pipe.add_command(incr("s")).ignore();
        pipe.add_command(incr("n"));
        conn.send_pipe(&pipe);
        conn.send(&incr("s"));
        let e = conn.recv_pipe::<Vec<Value>>().unwrap_err();
        assert!(e.to_string().contains("not an integer"), "{e}");
        // The pipeline's other command ran; the failed send's answer is
        // dropped, not taken for the next command's.
        assert_eq!(conn.run::<u64>(&incr("n")).unwrap(), 2);
    }

    #[test]
    fn a_pipeline_lost_with_its_connection_is_an_error_and_the_next_command_reconnects() {
        let server = Server::start("lost");
        let mut conn = server.conn();
        let id: u64 = conn.run(cmd("CLIENT").arg("ID")).unwrap();
        let mut pipe = Pipe::new();
        pipe.cmd("BLPOP").arg("nothing").arg(5);
        conn.send_pipe(&pipe);
        let mut other = server.conn();
        let t = Instant::now();
        other.run::<()>(cmd("CLIENT").arg("KILL").arg("ID").arg(id)).unwrap();
        assert!(conn.recv_pipe::<Vec<Value>>().is_err());
        assert!(t.elapsed() < Duration::from_secs(4), "waited {:?}", t.elapsed());
        assert_eq!(conn.run::<u64>(&incr("n")).unwrap(), 1);
    }

    #[test]
    fn a_send_leaves_no_answer_to_read_where_the_user_may_skip_answers_and_one_where_not() {
        let server = Server::start("quiet");
        let mut admin = server.conn();
        admin
            .run::<()>(
                cmd("ACL")
                    .arg("SETUSER")
                    .arg("plain")
                    .arg("on")
                    .arg(">pw")
                    .arg("~*")
                    .arg("+@all")
                    .arg("-client"),
            )
            .unwrap();
        let mut quiet = server.conn();
        let mut plain = server.conn_as("?user=plain&pass=pw");
        for (conn, answered) in [(&mut quiet, 0), (&mut plain, 1)] {
            for _ in 0..3 {
                let unread = conn.unread;
                conn.send(&incr("n"));
                assert_eq!(conn.unread, unread + answered);
                conn.send(cmd("SET").arg("s").arg("text"));
                conn.send(&incr("s"));
            }
            // Every answer is where it belongs: the next command's is its own.
            let (n, s): (u64, String) = conn.pipe(Pipe::new().cmd("GET").arg("n").cmd("GET").arg("s")).unwrap();
            assert_eq!(s, "text");
            assert!(n == 3 || n == 6, "{n}");
        }
        assert_eq!(admin.run::<u64>(cmd("GET").arg("n")).unwrap(), 6);
    }
}
