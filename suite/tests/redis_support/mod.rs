//! A real `redis-server` for the Redis tests, and hosts: this same test
//! binary started in host mode. Both are killed on drop. A missing
//! `redis-server` fails the test that needs it (never skips it).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one Redis test may take: past it, the watchdog ends the
/// whole test binary, saying so (every wait of these tests is bounded).
const TEST_LIMIT: Duration = Duration::from_secs(150);

/// A `redis-server` on a unix socket in its own temp dir.
pub struct Server {
    /// Set when the test that started it ends (its watchdog stands down).
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    child: Option<Child>,
    pub dir: PathBuf,
    aof: bool,
    password: Option<String>,
    /// `rediss://` on this loopback port, with certificates in `dir`.
    tls_port: Option<u16>,
}

impl Server {
    /// No persistence.
    pub fn start() -> Server {
        Server::start_with(false, None)
    }

    pub fn start_with(aof: bool, password: Option<&str>) -> Server {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pool-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let done = watchdog();
        let mut s = Server {
            done,
            child: None,
            dir,
            aof,
            password: password.map(str::to_string),
            tls_port: None,
        };
        s.launch();
        s
    }

    /// With a TLS port too, its certificate signed by a CA of its own
    /// (`ca()`), for `localhost` and 127.0.0.1.
    pub fn start_tls() -> Server {
        let mut s = Server::start();
        make_certs(&s.dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        s.tls_port = Some(port);
        s.restart();
        s
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The `rediss://` URL of a TLS server.
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://localhost:{}",
            self.tls_port.expect("a TLS server")
        )
    }

    fn launch(&mut self) {
        let sock = self.socket();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--unixsocketperm", "700", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        if let Some(port) = self.tls_port {
            cmd.args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(self.dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(self.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("ca.crt"));
        }
        let child = dies_with_us(&mut cmd).spawn().unwrap_or_else(|e| {
            panic!("redis-server could not be started ({e}): install it (Debian: apt-get install -y redis-server)")
        });
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while self.ping().is_none() {
            assert!(Instant::now() < until, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis+unix://{}?pass={p}", self.socket().display()),
            None => format!("redis+unix://{}", self.socket().display()),
        }
    }

    /// Kills it (SIGKILL: its data goes unless the AOF has it) and starts it again.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
        self.launch();
    }

    fn ping(&self) -> Option<()> {
        let mut s = UnixStream::connect(self.socket()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        if let Some(p) = &self.password {
            s.write_all(format!("AUTH {p}\r\n").as_bytes()).ok()?;
            let mut b = [0u8; 5];
            s.read_exact(&mut b).ok()?;
        }
        s.write_all(b"PING\r\n").ok()?;
        let mut b = [0u8; 7];
        s.read_exact(&mut b).ok()?;
        (&b == b"+PONG\r\n").then_some(())
    }

    /// Runs one command with `redis-cli`, returns its output lines.
    pub fn cli(&self, args: &[&str]) -> Vec<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.arg("-s").arg(self.socket());
        if let Some(p) = &self.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        let out = cmd.args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Every key in the server.
    pub fn keys(&self) -> Vec<String> {
        self.cli(&["--scan"])
    }

    /// Waits up to `limit` for `cond` on the server.
    pub fn wait_for(&self, limit: Duration, mut cond: impl FnMut(&Server) -> bool) -> bool {
        let until = Instant::now() + limit;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Redis's `used_memory`, in bytes.
    pub fn used_memory(&self) -> u64 {
        self.cli(&["INFO", "memory"])
            .iter()
            .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA of its own (`ca.crt`) and a server certificate it signed
/// (`server.crt`, `server.key`) for `localhost` and 127.0.0.1, in `d`.
fn make_certs(d: &std::path::Path) {
    let ossl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    ossl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=pool-test-ca",
            ],
        ]
        .concat(),
    );
    ossl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// Ends the whole test binary if the test that called it runs past
/// [`TEST_LIMIT`]; set the flag when the test is done.
fn watchdog() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = done.clone();
    let test = std::thread::current().name().unwrap_or("?").to_string();
    std::thread::spawn(move || {
        let until = Instant::now() + TEST_LIMIT;
        while Instant::now() < until {
            if watched.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{test} ran past {TEST_LIMIT:?}: a wait that should be bounded is not; aborting");
        std::process::abort();
    });
    done
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis Cluster of three primaries on loopback ports, each in its own
/// temp dir, no persistence, all with one password; its slots spread by
/// `redis-cli --cluster create`.
pub struct Cluster {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    nodes: Vec<(Child, u16)>,
    dir: PathBuf,
    password: String,
    tls: bool,
}

impl Cluster {
    pub fn start(password: &str) -> Cluster {
        Cluster::start_with(password, false)
    }

    /// Over TLS only (`rediss://`, the cluster bus too), its certificate
    /// signed by a CA of its own (`ca()`).
    pub fn start_tls(password: &str) -> Cluster {
        Cluster::start_with(password, true)
    }

    /// Three primaries, each with a replica, which takes over within a few
    /// seconds of its primary's death (node timeout 1 s).
    pub fn start_replicated(password: &str) -> Cluster {
        Cluster::start_nodes(password, false, 1)
    }

    fn start_with(password: &str, tls: bool) -> Cluster {
        Cluster::start_nodes(password, tls, 0)
    }

    fn start_nodes(password: &str, tls: bool, replicas: usize) -> Cluster {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pool-redis-cluster-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Cluster {
            done: watchdog(),
            nodes: Vec::new(),
            dir,
            password: password.to_string(),
            tls,
        };
        std::fs::create_dir_all(&c.dir).unwrap();
        if tls {
            make_certs(&c.dir);
        }
        for i in 0..3 * (1 + replicas) {
            let d = c.dir.join(i.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let (port, bus) = (free_port(), free_port());
            let mut cmd = Command::new("redis-server");
            if tls {
                cmd.args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--tls-cluster",
                    "yes",
                ])
                .args(["--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(c.dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(c.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(c.ca());
            } else {
                cmd.args(["--port", &port.to_string()]);
            }
            let child = dies_with_us(
                cmd.args(["--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()])
                    .args(["--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"])
                    .args(["--requirepass", password, "--masterauth", password])
                    .args(["--cluster-node-timeout", "1000"])
                    .arg("--dir")
                    .arg(&d)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server could not be started ({e}): install it (Debian: apt-get install -y redis-server)")
            });
            c.nodes.push((child, port));
        }
        let until = Instant::now() + Duration::from_secs(10);
        while c.ports().iter().any(|&p| c.cli(p, &["PING"]) != ["PONG"]) {
            assert!(
                Instant::now() < until,
                "the cluster's nodes did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let addrs: Vec<String> = c.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = c
            .redis_cli()
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let ok = |c: &Cluster| {
            c.ports().iter().all(|&p| {
                c.cli(p, &["CLUSTER", "INFO"])
                    .iter()
                    .any(|l| l.trim() == "cluster_state:ok")
                    && c.cli(p, &["CLUSTER", "SLOTS"]).len() >= 3
            }) && (0..c.nodes.len()).all(|i| {
                // A replica has its primary's data.
                c.is_primary(i)
                    || c.cli(c.nodes[i].1, &["INFO", "replication"])
                        .iter()
                        .any(|l| l.trim() == "master_link_status:up")
            })
        };
        while !ok(&c) {
            assert!(
                Instant::now() < until + Duration::from_secs(10),
                "the cluster did not form"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// Whether node `i` answers as a primary.
    pub fn is_primary(&self, i: usize) -> bool {
        self.cli(self.nodes[i].1, &["ROLE"])
            .first()
            .map(String::as_str)
            == Some("master")
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        let _ = self.nodes[i].0.kill();
        let _ = self.nodes[i].0.wait();
    }

    /// Each node's port.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(_, p)| *p).collect()
    }

    /// The URL of node `i`, with the password.
    pub fn url(&self, i: usize) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!(
            "{scheme}://:{}@127.0.0.1:{}",
            self.password, self.nodes[i].1
        )
    }

    /// The CA that signed a TLS cluster's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `redis-cli` with the password (and TLS).
    fn redis_cli(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-a", &self.password, "--no-auth-warning"]);
        if self.tls {
            cmd.arg("--tls").arg("--cacert").arg(self.ca());
        }
        cmd
    }

    /// Runs one command with `redis-cli` on the node at `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> Vec<String> {
        let out = self
            .redis_cli()
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Every key of node `i`.
    pub fn keys_of(&self, i: usize) -> Vec<String> {
        self.cli(self.nodes[i].1, &["--scan"])
    }

    /// Every key of every node.
    pub fn keys(&self) -> Vec<String> {
        (0..self.nodes.len())
            .flat_map(|i| self.keys_of(i))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        for (c, _) in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cmd`'s process dies with this test binary, even one that aborts (a
/// host in production is started on its own and does not).
fn dies_with_us(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only makes one async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

/// A host: this test binary (or `program`) in host mode, `workers` workers.
pub struct Host {
    pub child: Child,
}

impl Host {
    pub fn start(url: &str, workers: usize) -> Host {
        Host::start_program(&std::env::current_exe().unwrap(), url, workers)
    }

    /// A host that trusts `ca` for a `rediss://` URL.
    pub fn start_tls(url: &str, workers: usize, ca: &std::path::Path) -> Host {
        let child = dies_with_us(&mut Command::new(std::env::current_exe().unwrap()))
            .env(pool_runtime::redis::HOST_ENV, url)
            .env(pool_runtime::redis::HOST_WORKERS_ENV, workers.to_string())
            .env(pool_runtime::redis::CA_ENV, ca)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the host starts");
        Host { child }
    }

    pub fn start_program(program: &std::path::Path, url: &str, workers: usize) -> Host {
        Host::start_with_env(program, url, workers, &[])
    }

    /// A host with these variables set too.
    pub fn start_with_env(
        program: &std::path::Path,
        url: &str,
        workers: usize,
        vars: &[(&str, &str)],
    ) -> Host {
        let child = dies_with_us(&mut Command::new(program))
            .envs(vars.iter().copied())
            .env(pool_runtime::redis::HOST_ENV, url)
            .env(pool_runtime::redis::HOST_WORKERS_ENV, workers.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the host starts");
        Host { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Waits up to `limit` for the host to exit; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads lines of a child's stdout until one starts with `prefix`.
pub fn line_starting(child: &mut Child, prefix: &str) -> String {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines.next().expect("the child printed it").unwrap();
        if let Some((_, rest)) = line.split_once(prefix) {
            return rest.to_string();
        }
    }
}
