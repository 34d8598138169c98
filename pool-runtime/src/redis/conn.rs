//! One connection to Redis that comes back after a cut: a command that
//! fails on the connection (not on what Redis answered) is retried on a new
//! one, with back-off, until a deadline; then its error is returned.

use std::time::{Duration, Instant};

use redis::{Client, Cmd, Connection, FromRedisValue, RedisError, RedisResult};

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A Redis connection that reconnects (see the module docs).
pub(crate) struct Conn {
    client: Client,
    con: Option<Connection>,
    /// How long a command may keep trying to reach Redis.
    patience: Duration,
    /// Answers to [`Conn::send`]'s commands not read yet.
    unread: usize,
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
}

impl Conn {
    /// Connects now: an unreachable server, a wrong password or an unknown
    /// user is an error at once, in Redis's words.
    pub(crate) fn open(client: &Client, patience: Duration) -> RedisResult<Conn> {
        let con = connect(client)?;
        Ok(Conn {
            client: client.clone(),
            con: Some(con),
            patience,
            unread: 0,
        })
    }

    /// A connection that connects at its first command.
    pub(crate) fn lazy(client: &Client, patience: Duration) -> Conn {
        Conn {
            client: client.clone(),
            con: None,
            patience,
            unread: 0,
        }
    }

    /// Writes `cmd` without waiting for its answer (read, and dropped,
    /// before the next command's). Nothing is retried: a command sent on a
    /// connection that breaks may be lost, so only what the protocol can
    /// do without goes this way.
    pub(crate) fn send(&mut self, cmd: &Cmd) {
        if self.con.is_none() {
            match connect(&self.client) {
                Ok(con) => self.con = Some(con),
                Err(_) => return,
            }
        }
        let Some(con) = self.con.as_mut() else { return };
        if con.send_packed_command(&cmd.get_packed_command()).is_ok() {
            self.unread += 1;
        } else {
            self.con = None;
            self.unread = 0;
        }
    }

    /// Reads the answers [`Conn::send`] left.
    fn drain(&mut self) {
        while self.unread > 0 {
            let Some(con) = self.con.as_mut() else {
                self.unread = 0;
                return;
            };
            match con.recv_response() {
                Err(e) if is_connection_error(&e) => {
                    self.con = None;
                    self.unread = 0;
                }
                _ => self.unread -= 1,
            }
        }
    }

    /// Runs `cmd`, reconnecting as the module docs say. A command may thus
    /// run twice (it ran, then the answer was lost): the callers' commands
    /// are idempotent, or their effects de-duplicated by the driver.
    pub(crate) fn run<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        self.retrying(|con| cmd.query(con))
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
            call.invoke(con)
        })
    }

    /// Runs `pipe`, as [`Conn::run`] does; its answers.
    pub(crate) fn pipe<T: FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> RedisResult<T> {
        self.retrying(|con| pipe.query(con))
    }

    /// Runs `pipe`, as [`Conn::run`] does.
    pub(crate) fn retrying_pipe(&mut self, pipe: &redis::Pipeline) -> RedisResult<()> {
        self.pipe(pipe)
    }

    fn retrying<T>(&mut self, mut f: impl FnMut(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        self.drain();
        let deadline = Instant::now() + self.patience;
        let mut backoff = Duration::from_millis(10);
        loop {
            let result = match self.con.as_mut() {
                Some(con) => f(con),
                None => connect(&self.client).and_then(|con| f(self.con.insert(con))),
            };
            match result {
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

fn connect(client: &Client) -> RedisResult<Connection> {
    let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    // Blocking reads wait at most 200 ms in Redis; an answer later than
    // this is a connection that is gone.
    con.set_read_timeout(Some(Duration::from_secs(5)))?;
    con.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(con)
}
