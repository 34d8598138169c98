//! The Redis Streams backend against a real `redis-server` each test starts
//! (`redis_support`), with hosts that are this test binary in host mode.
//! Every wait is bounded.

mod common;
mod redis_support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pool_runtime::{worker_exit, worker_init, worker_task, ErrorKind, Pool};
use redis_support::{Cluster, Host, Server};

pool_runtime::worker_mode_before_main!();

struct State {
    base: u64,
    host: u32,
    ran: u64,
}

/// The host of a worker: its fork server's parent.
fn host_pid() -> u32 {
    let zygote = std::os::unix::process::parent_id();
    common::parent_of(zygote).unwrap_or(0)
}

#[worker_init]
fn start(base: &u64) -> State {
    State {
        base: *base,
        host: host_pid(),
        ran: 0,
    }
}

#[worker_init]
fn refuse(_: &u64) -> Result<State, String> {
    Err("no database here".into())
}

#[worker_task]
fn square(s: &mut State, x: u64) -> u64 {
    s.ran += 1;
    x * x + s.base
}

/// `x * x + base`, after 5 ms.
#[worker_task]
fn square_slowly(s: &mut State, x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(5));
    x * x + s.base
}

#[worker_task]
fn label(s: &State, x: u64) -> String {
    format!("{}-{x}", s.base)
}

/// Sleeps `ms`, then says which host ran it.
#[worker_task]
fn nap(s: &mut State, ms: u64) -> u32 {
    s.ran += 1;
    std::thread::sleep(Duration::from_millis(ms));
    s.host
}

/// Sleeps `ms`, appends a line to `path` (one per run), returns `x`.
#[worker_task]
fn nap_logged(s: &mut State, x: u64, ms: u64, path: String) -> u64 {
    s.ran += 1;
    std::thread::sleep(Duration::from_millis(ms));
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    // One write per line: hosts append to the same file at once.
    f.write_all(format!("{x}\n").as_bytes()).unwrap();
    x
}

/// Sleeps `ms`, and appends when it ran to `path`: a line `start end`,
/// in ms since the epoch (the hosts share this machine's clock).
#[worker_task]
fn nap_span(ms: u64, path: String) {
    use std::io::Write;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let start = now();
    std::thread::sleep(Duration::from_millis(ms));
    let line = format!("{start} {}\n", now());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

/// The most runs [`nap_span`] logged to `path` that overlapped at once.
fn most_at_once(path: &str) -> usize {
    let mut edges: Vec<(u128, i32)> = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let (a, b) = line.split_once(' ').unwrap();
        // An end before a start at the same instant: no overlap.
        edges.push((a.parse().unwrap(), 1));
        edges.push((b.parse().unwrap(), -1));
    }
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Logs its run to `path` (a line `x host`); on input `stall`, the first
/// time only, it first stops its own host for `ms` (a line `stall host`
/// says so): the host's lease lapses while its worker runs on.
#[worker_task]
fn stall_host_once(s: &mut State, x: u64, stall: u64, ms: u64, path: String) -> u64 {
    use std::io::Write;
    let log = |line: String| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .unwrap();
        // One write per line: hosts append to the same file at once.
        f.write_all(line.as_bytes()).unwrap();
    };
    if x == stall
        && std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(format!("{path}.stalled"))
            .is_ok()
    {
        log(format!("stall {}\n", s.host));
        let host = nix::unistd::Pid::from_raw(s.host as i32);
        let _ = nix::sys::signal::kill(host, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(ms));
        let _ = nix::sys::signal::kill(host, Signal::SIGCONT);
    }
    log(format!("{x} {}\n", s.host));
    x
}

#[worker_task]
fn boom(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

#[worker_task]
fn die_on_three(x: u64) -> u64 {
    if x == 3 {
        std::process::abort();
    }
    x
}

/// Kills its whole host on input `poison`.
#[worker_task]
fn kill_host_on(s: &mut State, x: u64, poison: u64) -> u64 {
    if x == poison {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.host as i32), Signal::SIGKILL);
        std::thread::sleep(Duration::from_secs(10));
    }
    x
}

#[worker_exit]
fn tally(s: State) -> u64 {
    s.ran
}

fn builder(url: &str) -> pool_runtime::PoolBuilder<pool_runtime::redis::Redis> {
    Pool::builder()
        .redis(url)
        .host_wait(Duration::from_secs(20))
        .lease(Duration::from_millis(600))
        .key_ttl(Duration::from_secs(3))
}

fn temp_file(name: &str) -> String {
    let p = std::env::temp_dir().join(format!("pool-redis-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p.display().to_string()
}

fn lines(path: &str) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// What this test's hosts left in Redis once the pool ended: nothing.
fn assert_clean(server: &Server) {
    let clean = server.wait_for(Duration::from_secs(3), |s| s.keys().is_empty());
    assert!(clean, "keys left behind: {:?}", server.keys());
}

/// What a cluster's pools and hosts left once the pools ended: nothing, on
/// any node.
fn assert_cluster_clean(cluster: &Cluster) {
    let until = Instant::now() + Duration::from_secs(3);
    while !cluster.keys().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cluster.keys().is_empty(),
        "keys left behind: {:?}",
        cluster.keys()
    );
}

#[test]
fn redis_the_local_contract_holds_on_two_hosts() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 2), Host::start(&server.url(), 2)];
    let pool = builder(&server.url()).hosts(2).build(start, 5u64).unwrap();
    let want: Vec<u64> = (0..20_000u64).map(|x| x * x + 5).collect();
    assert_eq!(pool.map(square, 0..20_000u64).unwrap(), want);
    let ordered: Vec<u64> = pool.imap(square, 0..500u64).map(Result::unwrap).collect();
    assert_eq!(ordered, want[..500]);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..500u64)
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, want[..500]);
    assert_eq!(pool.apply(square, 9).unwrap(), 86);
    let handles: Vec<_> = (0..10u64).map(|x| pool.submit(square, x)).collect();
    let got: Vec<u64> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(got, want[..10]);
    let piped = pool.pipeline(square).then(square).map(0..100u64).unwrap();
    let twice: Vec<u64> = (0..100u64).map(|x| (x * x + 5).pow(2) + 5).collect();
    assert_eq!(piped, twice);
    let slab = pool.map_slab(label, 0..3000u64).unwrap();
    assert_eq!(slab.to_vec(), pool.map(label, 0..3000u64).unwrap());
    assert_eq!(&slab[2999], "5-2999");
    // Both hosts took part.
    let hosts: std::collections::HashSet<u32> = pool
        .map(nap, vec![20u64; 40])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    pool.join().unwrap();
    assert_clean(&server);
}

/// `POOL_RUNTIME_HOST_SPIN_US=0`: a host whose workers never spin for
/// their next entry (its CPUs shared with other work) serves the same.
#[test]
fn redis_hosts_whose_workers_never_spin_serve_the_same() {
    let server = Server::start();
    let me = std::env::current_exe().unwrap();
    let quiet = [(pool_runtime::redis::HOST_SPIN_ENV, "0")];
    let _host = Host::start_with_env(&me, &server.url(), 2, &quiet);
    let pool = builder(&server.url()).hosts(1).build(start, 5u64).unwrap();
    for x in 0..200u64 {
        assert_eq!(pool.apply(square, x).unwrap(), x * x + 5);
    }
    let want: Vec<u64> = (0..5000u64).map(|x| x * x + 5).collect();
    assert_eq!(pool.map(square, 0..5000u64).unwrap(), want);
    pool.join().unwrap();
    assert_clean(&server);
}

#[test]
fn redis_async_handles_and_insights_work_as_locally() {
    let server = Server::start();
    let _host = Host::start(&server.url(), 2);
    let pool = builder(&server.url()).build(start, 0u64).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(pool.submit(square, 7)).unwrap(), 49);
    // A stream of outcomes, polled by hand.
    let stream = pool.imap(square, 0..50u64).into_stream();
    let got: Vec<u64> = rt.block_on(async {
        use std::future::poll_fn;
        use std::pin::pin;
        let mut stream = pin!(stream);
        let mut out = Vec::new();
        while let Some(r) = poll_fn(|cx| futures_core::Stream::poll_next(stream.as_mut(), cx)).await
        {
            out.push(r.unwrap());
        }
        out
    });
    assert_eq!(got, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
    // Handles like futures.
    let slow = pool.submit(nap, 300);
    let slow = slow.wait_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(slow.wait().is_ok());
    let handles: Vec<_> = (0..20u64).map(|x| pool.submit(square, x)).collect();
    let mut seen: Vec<usize> = pool_runtime::as_completed(handles)
        .map(|(i, r)| {
            assert_eq!(r.unwrap(), (i as u64).pow(2));
            i
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    // Insights count the items the hosts ran.
    let before = pool.insights().tasks();
    pool.map(square, 0..1000u64).unwrap();
    assert_eq!(pool.insights().tasks() - before, 1000);
    assert_eq!(pool.insights().duplicates, 0);
    // The driver's slots are not processes here: no pid is made up.
    assert!(pool.insights().workers.iter().all(|w| w.pid.is_none()));
}

#[test]
fn redis_panics_and_worker_deaths_are_outcomes_as_locally() {
    let server = Server::start();
    let _host = Host::start(&server.url(), 2);
    let pool = builder(&server.url()).build(start, 0u64).unwrap();
    let out: Vec<_> = pool.imap(boom, 0..6u64).collect();
    for (x, r) in out.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, x as u64),
            Err(e) => {
                assert_eq!(x, 3);
                let ErrorKind::Panicked(p) = e.kind() else {
                    panic!("{e}")
                };
                assert!(p.message.contains("three is not allowed"), "{e}");
                assert!(p.location.is_some(), "{e}");
            }
        }
    }
    assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1);
    let out: Vec<_> = pool.imap(die_on_three, 0..6u64).collect();
    for (x, r) in out.iter().enumerate() {
        if x == 3 {
            let e = r.as_ref().unwrap_err();
            let ErrorKind::WorkerDied(d) = e.kind() else {
                panic!("{e}")
            };
            assert_eq!(d.signal(), Some(libc::SIGABRT), "{e}");
        } else {
            assert_eq!(*r.as_ref().unwrap(), x as u64);
        }
    }
    // The host replaced its worker; the pool goes on.
    assert_eq!(pool.map(square, 0..100u64).unwrap().len(), 100);
}

#[test]
fn redis_a_host_killed_mid_task_loses_no_input() {
    let server = Server::start();
    let victim = Host::start(&server.url(), 2);
    let _other = Host::start(&server.url(), 2);
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .build(start, 0u64)
        .unwrap();
    let victim_pid = victim.pid();
    let start = Instant::now();
    std::thread::scope(|s| {
        let map = s.spawn(|| pool.map(nap, vec![100u64; 40]));
        std::thread::sleep(Duration::from_millis(300));
        victim.signal(Signal::SIGKILL);
        let hosts = map.join().unwrap().unwrap();
        assert_eq!(hosts.len(), 40);
        assert!(
            hosts.contains(&victim_pid),
            "the victim ran some before it died"
        );
    });
    // 40 × 100 ms on 4 workers, then 2, plus the lease: well under 10 s.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // The dead host is not waited for: the other's two workers answer.
    let joined = Instant::now();
    assert_eq!(pool.join_with(tally).unwrap().len(), 2);
    assert!(
        joined.elapsed() < Duration::from_secs(3),
        "{:?}",
        joined.elapsed()
    );
    assert_clean(&server);
    drop(victim);
}

#[test]
fn redis_a_dead_hosts_input_is_rerun_within_lease_and_a_second() {
    let server = Server::start();
    let victim = Host::start(&server.url(), 1);
    let pool = builder(&server.url())
        .lease(Duration::from_millis(500))
        .build(start, 0u64)
        .unwrap();
    let other = Host::start(&server.url(), 1);
    // Wait for the second host to join before the victim takes the input.
    assert!(server.wait_for(Duration::from_secs(10), |s| {
        s.cli(&["--scan", "--pattern", "*:lease:*"]).len() == 2
    }));
    std::thread::scope(|s| {
        let h = s.spawn(|| pool.apply(nap, 1500));
        // Let one host take it; kill that one.
        std::thread::sleep(Duration::from_millis(200));
        let owner = server.cli(&["--scan", "--pattern", "*:lease:*"]);
        let _ = owner;
        victim.signal(Signal::SIGKILL);
        let killed_at = Instant::now();
        let ran_on = h.join().unwrap().unwrap();
        if ran_on == other.pid() {
            // Re-run at once on the other host: 1.5 s of work after at most
            // lease + 1 s of waiting.
            let took = killed_at.elapsed();
            assert!(
                took < Duration::from_millis(500 + 1000 + 1500 + 300),
                "{took:?}"
            );
        }
    });
}

#[test]
fn redis_a_stopped_host_past_its_lease_gives_no_second_outcome() {
    let server = Server::start();
    let log = temp_file("sigstop");
    let stopped = Host::start(&server.url(), 2);
    let _other = Host::start(&server.url(), 2);
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .build(start, 0u64)
        .unwrap();
    std::thread::scope(|s| {
        let inputs: Vec<(u64, u64, String)> = (0..16).map(|x| (x, 300, log.clone())).collect();
        let map = s.spawn(|| pool.map(nap_logged, inputs));
        std::thread::sleep(Duration::from_millis(150));
        stopped.signal(Signal::SIGSTOP);
        // Past the lease: its entries go to the other host.
        std::thread::sleep(Duration::from_millis(1500));
        stopped.signal(Signal::SIGCONT);
        let got = map.join().unwrap().unwrap();
        assert_eq!(got, (0..16).collect::<Vec<u64>>());
    });
    // Each input has its one outcome; some ran twice (the stopped host's
    // late runs), and those late results were dropped, and counted.
    let runs = lines(&log);
    for x in 0..16 {
        assert!(runs.contains(&x), "{x} never ran");
    }
    let twice = runs.len() - runs.iter().collect::<std::collections::HashSet<_>>().len();
    assert!(twice > 0, "no input ran twice: {runs:?}");
    let until = Instant::now() + Duration::from_secs(3);
    while pool.insights().duplicates == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pool.insights().duplicates > 0, "late outcomes not counted");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn redis_a_host_whose_lease_lapsed_runs_none_of_the_entries_it_held_unstarted() {
    // Short tasks, one per entry: each host's consumer holds many at a
    // time. The host running input 1500 is stopped past its lease while
    // its worker runs that input; the other host takes what it held. On
    // waking, it must not run what it had not started: those are the
    // other host's now (were one of them an input that kills hosts, both
    // would die of it).
    let server = Server::start();
    let log = temp_file("lapsed");
    let _ = std::fs::remove_file(format!("{log}.stalled"));
    let _hosts = [Host::start(&server.url(), 1), Host::start(&server.url(), 1)];
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .build(start, 0u64)
        .unwrap();
    let (n, stall) = (3000u64, 1500u64);
    let got = pool
        .map(
            stall_host_once,
            (0..n).map(|x| (x, stall, 2000, log.clone())),
        )
        .unwrap();
    assert_eq!(got, (0..n).collect::<Vec<u64>>());
    // The lines: `x host` for each run, in the order each host ran them
    // (one worker each); `stall host` where the stopped host stopped.
    let runs = || -> Vec<(String, u32)> {
        let text = std::fs::read_to_string(&log).unwrap();
        text.lines()
            .map(|l| {
                let (x, h) = l.split_once(' ').unwrap();
                (x.to_string(), h.parse().unwrap())
            })
            .collect()
    };
    let stopped = runs()
        .iter()
        .find(|r| r.0 == "stall")
        .expect("a host was stopped")
        .1;
    // Until the stopped host is awake and has run on a while, in the pool.
    let woke = || runs().contains(&(stall.to_string(), stopped));
    let until = Instant::now() + Duration::from_secs(10);
    while !woke() {
        assert!(Instant::now() < until, "the stopped host never woke");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    pool.join().unwrap();
    let runs = runs();
    let mut times = std::collections::HashMap::<&str, u32>::new();
    for (x, _) in &runs {
        *times.entry(x).or_default() += 1;
    }
    assert_eq!(times.len() as u64, n + 1, "every input ran");
    // What the stopped host ran before it stopped may run again (its
    // replies had not gone when the lease lapsed), as may the input it
    // was running; nothing it ran after waking may have run elsewhere.
    let stall = stall.to_string();
    let again: Vec<&str> = runs
        .iter()
        .filter(|r| r.1 == stopped)
        .map(|r| r.0.as_str())
        .skip_while(|&x| x != "stall")
        .skip(1)
        .filter(|&x| x != stall && times[x] > 1)
        .collect();
    assert!(
        again.is_empty(),
        "run by the stopped host after it woke, and by the other: {again:?}"
    );
    assert_clean(&server);
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(format!("{log}.stalled"));
}

#[test]
fn redis_a_task_ten_times_the_lease_runs_once() {
    let server = Server::start();
    let log = temp_file("long");
    let _hosts = [Host::start(&server.url(), 1), Host::start(&server.url(), 1)];
    let pool = builder(&server.url())
        .hosts(2)
        .lease(Duration::from_millis(300))
        .build(start, 0u64)
        .unwrap();
    assert_eq!(pool.apply(nap_logged, (42, 3000, log.clone())).unwrap(), 42);
    // Let any second run show itself.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(&log), vec![42], "ran more than once");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn redis_a_host_joining_mid_map_takes_work() {
    let server = Server::start();
    let _first = Host::start(&server.url(), 1);
    let pool = builder(&server.url())
        .chunk_size(1)
        .build(start, 0u64)
        .unwrap();
    let mut late = None;
    std::thread::scope(|s| {
        let map = s.spawn(|| pool.map(nap, vec![50u64; 60]));
        std::thread::sleep(Duration::from_millis(300));
        late = Some(Host::start(&server.url(), 1));
        let hosts = map.join().unwrap().unwrap();
        let late_pid = late.as_ref().unwrap().pid();
        assert!(
            hosts.contains(&late_pid),
            "the late host ran nothing: {hosts:?}"
        );
    });
}

#[test]
fn redis_a_host_leaving_by_sigterm_finishes_and_runs_its_exit_hooks() {
    let server = Server::start();
    let mut leaving = Host::start(&server.url(), 2);
    let _stays = Host::start(&server.url(), 2);
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .exit_hook(tally)
        .build(start, 0u64)
        .unwrap();
    std::thread::scope(|s| {
        let map = s.spawn(|| pool.map(nap, vec![50u64; 80]));
        std::thread::sleep(Duration::from_millis(300));
        leaving.signal(Signal::SIGTERM);
        assert_eq!(map.join().unwrap().unwrap().len(), 80);
    });
    let status = leaving
        .wait_exit(Duration::from_secs(10))
        .expect("the host left");
    assert!(status.success(), "{status:?}");
    // Its two workers' exit hooks and the other host's two reach join_with.
    let tallies = pool.join_with(tally).unwrap();
    assert_eq!(tallies.len(), 4, "{tallies:?}");
    assert_eq!(tallies.iter().sum::<u64>(), 80, "{tallies:?}");
    assert_clean(&server);
}

#[test]
fn redis_join_with_reaches_every_worker_of_every_host() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 2), Host::start(&server.url(), 1)];
    let pool = builder(&server.url()).hosts(2).build(start, 0u64).unwrap();
    pool.map(square, 0..1000u64).unwrap();
    let tallies = pool.join_with(tally).unwrap();
    assert_eq!(tallies.len(), 3, "{tallies:?}");
    assert_eq!(tallies.iter().sum::<u64>(), 1000);
    assert_clean(&server);
}

fn restart_mid_map(aof: bool) {
    let mut server = Server::start_with(aof, None);
    let _hosts = [Host::start(&server.url(), 2), Host::start(&server.url(), 2)];
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .build(start, 0u64)
        .unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        let map = s.spawn(|| pool.imap(nap, vec![40u64; 60]).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(300));
        server.restart();
        let got = map.join().unwrap();
        assert_eq!(got.len(), 60);
        for r in &got {
            if let Err(e) = r {
                panic!("after a restart: {e}");
            }
        }
    });
    assert!(started.elapsed() < Duration::from_secs(30));
    // The pool still works.
    assert_eq!(pool.map(square, 0..100u64).unwrap().len(), 100);
}

#[test]
fn redis_restarted_without_persistence_the_driver_resubmits() {
    restart_mid_map(false);
}

#[test]
fn redis_restarted_with_aof_the_map_completes_once() {
    restart_mid_map(true);
}

#[test]
fn redis_connections_cut_mid_map_come_back() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 2), Host::start(&server.url(), 2)];
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .build(start, 0u64)
        .unwrap();
    std::thread::scope(|s| {
        let map = s.spawn(|| pool.map(nap, vec![30u64; 60]));
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(200));
            server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        }
        assert_eq!(map.join().unwrap().unwrap().len(), 60);
    });
}

#[test]
fn redis_a_trimmed_stream_loses_no_input() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 1), Host::start(&server.url(), 1)];
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .build(start, 0u64)
        .unwrap();
    let tasks = server.cli(&["--scan", "--pattern", "*:tasks"]).remove(0);
    let replies = tasks.replace(":tasks", ":replies");
    std::thread::scope(|s| {
        let map = s.spawn(|| pool.map(nap, vec![20u64; 200]));
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(300));
            // Someone trims both streams to nothing.
            server.cli(&["XTRIM", &tasks, "MAXLEN", "0"]);
            server.cli(&["XTRIM", &replies, "MAXLEN", "0"]);
        }
        assert_eq!(map.join().unwrap().unwrap().len(), 200);
    });
}

#[test]
fn redis_an_input_that_kills_its_workers_is_quarantined_and_dead_lettered() {
    let server = Server::start();
    let _host = Host::start(&server.url(), 2);
    let pool = builder(&server.url())
        .retries(1)
        .build(start, 0u64)
        .unwrap();
    let out: Vec<_> = pool.imap(die_on_three, 0..6u64).collect();
    let e = out[3].as_ref().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Quarantined(_)), "{e}");
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 5);
    let dead = server.cli(&["--scan", "--pattern", "*:dead"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(server.cli(&["XLEN", &dead[0]]), vec!["1"]);
}

/// `0..n` with one entry each on two hosts, one delivery allowed: input
/// `poison` kills the host that runs it and is quarantined, every other
/// input has its value (one charged for a death it did not cause would be
/// quarantined too), and the other host still serves.
fn one_host_killer_among(n: u64, poison: u64) {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 1), Host::start(&server.url(), 1)];
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .max_deliveries(1)
        .lease(Duration::from_millis(400))
        .build(start, 0u64)
        .unwrap();
    let out: Vec<_> = pool
        .imap(kill_host_on, (0..n).map(|x| (x, poison)))
        .collect();
    for (x, r) in out.iter().enumerate() {
        if x as u64 == poison {
            let e = r.as_ref().unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Quarantined(_)), "{e}");
            assert!(e.to_string().contains("dead-letter"), "{e}");
        } else {
            assert_eq!(*r.as_ref().unwrap(), x as u64, "{x}");
        }
    }
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

#[test]
fn redis_an_input_that_kills_hosts_is_quarantined_after_its_deliveries() {
    one_host_killer_among(10, 7);
}

#[test]
fn redis_when_every_host_is_gone_the_waiting_inputs_fail_after_host_wait() {
    // An input that kills every host it reaches, allowed more deliveries
    // than there are hosts: both die of it. What waits gets an error
    // within the builder's host_wait, and a host that comes later serves
    // the pool again.
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 1), Host::start(&server.url(), 1)];
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .max_deliveries(5)
        .lease(Duration::from_millis(400))
        .host_wait(Duration::from_secs(2))
        .build(start, 0u64)
        .unwrap();
    let t = Instant::now();
    let out: Vec<_> = pool
        .imap(kill_host_on, (0..40u64).map(|x| (x, 20)))
        .collect();
    let took = t.elapsed();
    assert_eq!(out.len(), 40);
    let failed: Vec<usize> = (0..40).filter(|&x| out[x].is_err()).collect();
    assert!(failed.contains(&20), "{failed:?}");
    for (x, r) in out.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, x as u64),
            Err(e) => {
                assert!(matches!(e.kind(), ErrorKind::PoolBroken(_)), "{x}: {e}");
                assert!(
                    e.to_string().contains("no host has served the pool"),
                    "{x}: {e}"
                );
            }
        }
    }
    // Two leases for the hosts' deaths to show, host_wait, a second of
    // checks; the poison input's own 10 s nap is not waited for.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // While no host is there, more work fails as it is sent, without
    // another wait: 1000 inputs, many windows of the driver's.
    let t = Instant::now();
    let more: Vec<_> = pool.call().chunk_size(1).imap(square, 0..1000u64).collect();
    assert_eq!(more.len(), 1000);
    for r in &more {
        let e = r.as_ref().unwrap_err();
        assert!(e.to_string().contains("no host has served the pool"), "{e}");
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // Once a new host serves the pool (its start takes a moment), calls
    // run again.
    let _late = Host::start(&server.url(), 1);
    let until = Instant::now() + Duration::from_secs(10);
    let served = loop {
        match pool.apply(square, 5) {
            Ok(v) => break v,
            Err(e) if Instant::now() < until && matches!(e.kind(), ErrorKind::PoolBroken(_)) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the late host never served the pool: {e}"),
        }
    };
    assert_eq!(served, 25);
    assert_eq!(pool.map(square, 0..100u64).unwrap().len(), 100);
    pool.join().unwrap();
    assert_clean(&server);
}

#[test]
fn redis_entries_a_host_took_but_had_not_started_are_not_charged_for_its_death() {
    // Short tasks: by input 1500 each host's consumer takes many entries
    // at a time.
    one_host_killer_among(3000, 1500);
}

#[test]
fn redis_entries_a_leaving_host_had_not_started_are_not_charged() {
    // Short tasks, one per entry: the leaving host's consumer holds many
    // it has not started when SIGTERM comes; they go to the other host,
    // and with `max_deliveries(1)` any charge would quarantine them.
    let server = Server::start();
    let mut leaving = Host::start(&server.url(), 1);
    let _stays = Host::start(&server.url(), 1);
    let pool = builder(&server.url())
        .hosts(2)
        .chunk_size(1)
        .max_deliveries(1)
        .build(start, 0u64)
        .unwrap();
    let mut out = Vec::new();
    for (i, r) in pool.imap(square, 0..20_000u64).enumerate() {
        if i == 2_000 {
            leaving.signal(Signal::SIGTERM);
        }
        out.push(r);
    }
    for (x, r) in out.iter().enumerate() {
        let x = x as u64;
        assert_eq!(*r.as_ref().unwrap_or_else(|e| panic!("{x}: {e}")), x * x);
    }
    let status = leaving
        .wait_exit(Duration::from_secs(10))
        .expect("the host left");
    assert!(status.success(), "{status:?}");
    pool.join().unwrap();
    assert_clean(&server);
}

#[test]
fn redis_terminate_ends_every_waiting_input_at_once_and_hosts_serve_the_next_pool() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 1), Host::start(&server.url(), 1)];
    let pool = builder(&server.url()).hosts(2).build(start, 0u64).unwrap();
    std::thread::scope(|s| {
        let map = s.spawn(|| {
            pool.call()
                .chunk_size(1)
                .imap(nap, vec![10_000u64; 6])
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        pool.terminate();
        let out = map.join().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(out.len(), 6);
        for r in out {
            assert_eq!(r.unwrap_err().kind(), &ErrorKind::Terminated);
        }
    });
    assert_eq!(
        pool.apply(square, 2).unwrap_err().kind(),
        &ErrorKind::Terminated
    );
    let t = Instant::now();
    drop(pool);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "drop took {:?}",
        t.elapsed()
    );
    assert_clean(&server);
    // The same hosts serve the next pool, their naps of the last one
    // stopped or done.
    let next = builder(&server.url()).hosts(2).build(start, 1u64).unwrap();
    assert_eq!(
        next.map(square, 0..100u64).unwrap(),
        (0..100u64).map(|x| x * x + 1).collect::<Vec<_>>()
    );
    next.join().unwrap();
    assert_clean(&server);
}

#[test]
fn redis_two_drivers_share_hosts_without_crosstalk() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 2), Host::start(&server.url(), 2)];
    std::thread::scope(|s| {
        let runs: Vec<_> = [1u64, 1000]
            .into_iter()
            .map(|base| {
                let url = server.url();
                s.spawn(move || {
                    let pool = builder(&url).hosts(2).build(start, base).unwrap();
                    let got = pool.map(square, 0..5000u64).unwrap();
                    let want: Vec<u64> = (0..5000u64).map(|x| x * x + base).collect();
                    assert_eq!(got, want);
                })
            })
            .collect();
        for r in runs {
            r.join().unwrap();
        }
    });
    assert_clean(&server);
}

const DRIVER_ROLE: &str = "POOL_REDIS_TEST_DRIVER";

/// Run by `redis_a_killed_drivers_keys_expire_and_its_hosts_stop`: a driver
/// that maps forever.
#[test]
#[ignore]
fn redis_role_driver() {
    let Ok(url) = std::env::var(DRIVER_ROLE) else {
        return;
    };
    let pool = builder(&url).chunk_size(1).build(start, 0u64).unwrap();
    println!("READY");
    loop {
        let _ = pool.map(nap, vec![50u64; 20]);
    }
}

#[test]
fn redis_a_killed_drivers_keys_expire_and_its_hosts_stop() {
    let server = Server::start();
    let host = Host::start(&server.url(), 2);
    let mut driver = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "redis_role_driver", "--nocapture"])
        .env(DRIVER_ROLE, server.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    redis_support::line_starting(&mut driver, "READY");
    std::thread::sleep(Duration::from_millis(300));
    let workers = common::children_of(host.pid());
    assert!(!workers.is_empty());
    driver.kill().unwrap();
    driver.wait().unwrap();
    // The keys expire (key_ttl 3 s), and the host ends its session: its
    // local pool's processes go.
    let gone = server.wait_for(Duration::from_secs(8), |s| s.keys().is_empty());
    assert!(gone, "left: {:?}", server.keys());
    let until = Instant::now() + Duration::from_secs(5);
    while !common::children_of(host.pid()).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        common::children_of(host.pid()).is_empty(),
        "the host still runs the dead driver's pool"
    );
}

#[test]
fn redis_a_wrong_password_fails_build_fast_in_redis_words() {
    let server = Server::start_with(false, Some("right-password"));
    let url = format!("redis+unix://{}?pass=wrong", server.socket().display());
    let started = Instant::now();
    let e = builder(&url).build(start, 0u64).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e.kind(), ErrorKind::Init(_)), "{e}");
    let text = e.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("pass=wrong"), "the password leaked: {text}");
    // The right one works.
    let _host = Host::start(&server.url(), 1);
    let pool = builder(&server.url()).build(start, 0u64).unwrap();
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

#[test]
fn redis_tls_with_a_private_ca_and_a_wrong_one_fails_fast() {
    let server = Server::start_tls();
    let _host = Host::start_tls(&server.tls_url(), 1, &server.ca());
    let pool = builder(&server.tls_url())
        .redis_ca(server.ca())
        .build(start, 1u64)
        .unwrap();
    assert_eq!(pool.map(square, 0..1000u64).unwrap()[10], 101);
    pool.join().unwrap();
    // Without the CA, the server's certificate is not trusted: build says so.
    let started = Instant::now();
    let e = builder(&server.tls_url()).build(start, 1u64).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let text = e.to_string();
    assert!(
        text.contains("cannot connect") && text.to_lowercase().contains("certificate"),
        "{text}"
    );
}

#[test]
fn redis_a_host_running_other_code_is_refused_by_name() {
    let server = Server::start();
    let other = std::path::Path::new(env!("CARGO_BIN_EXE_spawn_other_code"));
    let _host = Host::start_program(other, &server.url(), 1);
    let started = Instant::now();
    let e = builder(&server.url()).build(start, 0u64).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let text = e.to_string();
    assert!(text.contains("different code"), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert_clean(&server);
}

#[test]
fn redis_a_failing_init_on_the_hosts_fails_build() {
    let server = Server::start();
    let _host = Host::start(&server.url(), 1);
    let e = builder(&server.url())
        .build::<_, State, _, _>(refuse, 0u64)
        .unwrap_err();
    assert!(e.to_string().contains("no database here"), "{e}");
}

#[test]
fn redis_every_worker_of_every_host_runs_at_once_and_a_host_that_joins_adds_its_own() {
    // Two relays (in flight: two batches each, were that all), two hosts of
    // six workers: all twelve must be busy at once, as they would be on a
    // pool of twelve local workers.
    let server = Server::start();
    let mut hosts = vec![Host::start(&server.url(), 6), Host::start(&server.url(), 6)];
    let pool = builder(&server.url())
        .workers(2)
        .hosts(2)
        .build(start, 0u64)
        .unwrap();
    let log = temp_file("at-once");
    pool.map(nap_span, (0..36).map(|_| (300u64, log.clone())))
        .unwrap();
    let most = most_at_once(&log);
    assert!(most >= 10, "at most {most} of 12 workers ran at once");
    // A third host joins: its workers take part in the next map.
    hosts.push(Host::start(&server.url(), 6));
    let until = Instant::now() + Duration::from_secs(10);
    while pool.broadcast(whoami, ()).unwrap().len() < 18 {
        assert!(Instant::now() < until, "the third host never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The driver sizes its window at its next look at the hosts.
    std::thread::sleep(Duration::from_secs(1));
    let log = temp_file("at-once-3");
    pool.map(nap_span, (0..54).map(|_| (300u64, log.clone())))
        .unwrap();
    let most = most_at_once(&log);
    assert!(most >= 15, "at most {most} of 18 workers ran at once");
    pool.join().unwrap();
    assert!(server.keys().is_empty(), "{:?}", server.keys());
}

#[test]
fn redis_a_lazy_input_stays_bounded_in_redis() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 2), Host::start(&server.url(), 2)];
    let pool = builder(&server.url()).hosts(2).build(start, 0u64).unwrap();
    let grew = imap_squares_growth(&server, &pool, 400_000);
    // The window, not the input: a few MiB at most.
    assert!(grew < 16 << 20, "Redis grew by {grew} bytes");
}

/// How far Redis's memory rose above what it was while `pool` squared
/// `0..n` lazily (each result checked), looked at every 20 ms.
fn imap_squares_growth(server: &Server, pool: &Pool<State>, n: u64) -> u64 {
    let before = server.used_memory();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (got, peak) = std::thread::scope(|s| {
        let watch = s.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                peak = peak.max(server.used_memory());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        let mut got = 0u64;
        for (i, r) in pool.imap(square, 0..n).enumerate() {
            assert_eq!(r.unwrap(), (i as u64).pow(2));
            got += 1;
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        (got, watch.join().unwrap())
    });
    assert_eq!(got, n);
    peak.saturating_sub(before)
}

#[test]
fn redis_a_lazy_input_after_many_short_calls_stays_bounded_in_redis() {
    // `apply`s of one short input each let many batches be in flight; the
    // `imap` after them cuts large batches at once, before any comes back
    // to show it: they go two per worker, not as deep as the short ones.
    // Built with `--release`, 10 M inputs grew Redis by 3–52 MiB before
    // that rule and 3 MiB after (the rule itself: `redis::depth`'s unit
    // test); a debug build's driver is too slow to fill the deep window.
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 1), Host::start(&server.url(), 1)];
    let pool = builder(&server.url())
        .hosts(2)
        .lease(Duration::from_millis(500))
        .build(start, 0u64)
        .unwrap();
    for x in 0..2_000u64 {
        assert_eq!(pool.apply(square, x).unwrap(), x * x);
    }
    let grew = imap_squares_growth(&server, &pool, 2_000_000);
    assert!(grew < 16 << 20, "Redis grew by {grew} bytes");
    pool.join().unwrap();
}

#[test]
fn redis_after_join_no_keys_consumers_or_pending_entries_are_left() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 1), Host::start(&server.url(), 1)];
    let pool = builder(&server.url()).hosts(2).build(start, 0u64).unwrap();
    // While it lives: one group, two consumers.
    let tasks = server.cli(&["--scan", "--pattern", "*:tasks"]);
    assert_eq!(tasks.len(), 1);
    pool.map(square, 0..10_000u64).unwrap();
    let info = server.cli(&["XINFO", "CONSUMERS", &tasks[0], "hosts"]);
    assert!(!info.is_empty());
    let pending = server.cli(&["XPENDING", &tasks[0], "hosts"]);
    assert_eq!(
        pending.first().map(String::as_str),
        Some("0"),
        "{pending:?}"
    );
    pool.join().unwrap();
    assert!(
        server.keys().is_empty(),
        "left at once: {:?}",
        server.keys()
    );
}

/// The pid of the worker that runs it.
#[worker_task]
fn whoami(_: &mut State) -> u32 {
    std::process::id()
}

#[test]
fn redis_broadcast_reaches_every_worker_of_every_host() {
    let server = Server::start();
    let _hosts = [Host::start(&server.url(), 2), Host::start(&server.url(), 1)];
    let pool = builder(&server.url()).hosts(2).build(start, 0u64).unwrap();
    let pids = pool.broadcast(whoami, ()).unwrap();
    assert_eq!(pids.len(), 3, "{pids:?}");
    let distinct: std::collections::HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
    // And a failure on one worker is the broadcast's error.
    let e = pool.broadcast(boom, 3).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Panicked(_)), "{e}");
    pool.join().unwrap();
    assert_clean(&server);
}

#[test]
fn redis_acl_users_one_kept_to_the_pool_keys_serves_one_without_scripts_or_streams_fails_build() {
    let server = Server::start_with(false, Some("admin-password"));
    let sock = server.socket().display().to_string();
    let user = |name: &str, rules: &[&str]| {
        let mut args = vec![
            "ACL",
            "SETUSER",
            name,
            "on",
            ">secret-of-user",
            "~pool-runtime:*",
        ];
        args.extend_from_slice(rules);
        assert_eq!(server.cli(&args), ["OK"], "ACL SETUSER {name}");
        format!("redis+unix://{sock}?user={name}&pass=secret-of-user")
    };
    // Kept to the crate's keys, with no admin command: serves.
    let pool_user = user("pool", &["+@all", "-@admin", "-@dangerous"]);
    let host = Host::start(&pool_user, 1);
    let pool = builder(&pool_user).build(start, 1u64).unwrap();
    assert_eq!(pool.map(square, 0..500u64).unwrap()[7], 50);
    pool.join().unwrap();
    drop(host);
    // A driver whose user may not use streams: `build` fails at once, naming it.
    let no_streams = user("nostreams", &["+@all", "-@stream"]);
    let started = Instant::now();
    let e = builder(&no_streams).build(start, 0u64).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e.kind(), ErrorKind::Init(_)), "{e}");
    assert!(e.to_string().contains("no permissions"), "{e}");
    // A host whose user may not run scripts refuses, and `build` says why.
    let no_scripts = user("noscripts", &["+@all", "-@scripting"]);
    let _host = Host::start(&no_scripts, 1);
    let started = Instant::now();
    let e = builder(&pool_user).build(start, 0u64).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let text = e.to_string();
    assert!(
        text.contains("no permissions") && text.contains("denies this host's user"),
        "{text}"
    );
    assert!(
        !text.contains("secret-of-user"),
        "the password leaked: {text}"
    );
}

#[test]
fn redis_timeouts_recycling_and_progress_work_as_locally() {
    let server = Server::start();
    let _host = Host::start(&server.url(), 2);
    let pool = builder(&server.url())
        .task_timeout(Duration::from_millis(500))
        .max_tasks_per_worker(7)
        .progress(pool_runtime::ProgressMode::Always)
        .build(start, 0u64)
        .unwrap();
    // A task past its limit is `TimedOut`, on the host as locally; the
    // others of its map are untouched.
    let out: Vec<_> = pool.imap(nap, [10u64, 3_000, 10, 10]).collect();
    for (i, r) in out.iter().enumerate() {
        if i == 1 {
            let e = r.as_ref().unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::TimedOut(_)), "{e}");
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    // Workers recycled after seven tasks still give every outcome once.
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..300u64).unwrap(), want);
    pool.join().unwrap();
    assert_clean(&server);
}

#[test]
fn redis_garbage_in_a_pools_streams_is_dropped_never_a_crash() {
    let server = Server::start();
    let mut host = Host::start(&server.url(), 2);
    let pool = builder(&server.url()).build(start, 0u64).unwrap();
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let key = |suffix: &str| {
        let keys = server.keys();
        keys.iter()
            .find(|k| k.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} among {keys:?}"))
            .clone()
    };
    let (tasks, replies) = (key(":tasks"), key(":replies"));
    // A `Run` header (tag, task, count) claiming `count` inputs, then `body`.
    let run = |count: u32, body: &[u8]| {
        let mut b = vec![0u8];
        b.extend_from_slice(&999_999_999u64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(body);
        b
    };
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let tag = "999999999";
    let bad_tasks: Vec<Vec<(&str, Vec<u8>)>> = vec![
        vec![("junk", b"1".to_vec())],
        vec![
            ("t", tag.into()),
            ("o", b"0".to_vec()),
            ("f", vec![0xff, 0]),
        ],
        // Four billion inputs claimed, three bytes there.
        vec![
            ("t", tag.into()),
            ("o", b"0".to_vec()),
            ("f", run(u32::MAX, &[1, 2, 3])),
        ],
        // An input whose length runs past the entry.
        vec![
            ("t", tag.into()),
            ("o", b"0".to_vec()),
            ("f", run(1, &[31 << 3, 0xff, 0xff, 0xff, 0x7f])),
        ],
    ];
    for fields in &bad_tasks {
        let mut c = redis::cmd("XADD");
        c.arg(&tasks).arg("*");
        for (k, v) in fields {
            c.arg(*k).arg(v);
        }
        let _: String = c.query(&mut con).unwrap();
    }
    let bad_replies: Vec<Vec<(&str, &[u8])>> = vec![
        vec![("junk", b"1")],
        vec![
            ("t", tag.as_bytes()),
            ("o", b"0"),
            ("n", b"1"),
            ("b", &[0xff, 0xff, 0xff]),
        ],
        vec![
            ("t", tag.as_bytes()),
            ("o", b"4000000000"),
            ("n", b"4000000000"),
            ("b", b""),
        ],
        vec![("k", b"b"), ("t", b"77"), ("n", b"4000000000"), ("b", b"x")],
    ];
    for fields in &bad_replies {
        let mut c = redis::cmd("XADD");
        c.arg(&replies).arg("*");
        for (k, v) in fields {
            c.arg(*k).arg(*v);
        }
        let _: String = c.query(&mut con).unwrap();
    }
    // The pool and its host go on, every outcome right.
    let want: Vec<u64> = (0..2_000u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..2_000u64).unwrap(), want);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    assert!(host.wait_exit(Duration::ZERO).is_none(), "the host died");
    // What no driver wrote went to the dead-letter stream, none of it stays
    // pending for ever.
    let dead_key = tasks.replace(":tasks", ":dead");
    let dead = server.wait_for(Duration::from_secs(5), |s| {
        s.cli(&["XLEN", &dead_key]).first().map(String::as_str) == Some("4")
    });
    assert!(dead, "dead letters: {:?}", server.cli(&["XLEN", &dead_key]));
    let pending = server.cli(&["XPENDING", &tasks, "hosts"]);
    assert_eq!(
        pending.first().map(String::as_str),
        Some("0"),
        "{pending:?}"
    );
    pool.join().unwrap();
    assert_clean(&server);
}

/// A Redis Cluster (with a password): drivers and hosts are given any
/// node's URL. A pool's keys share one slot (one node), the registry of
/// pools may be on another; the hosts take work, one dies holding some (its entries are reclaimed by
/// script on the pool's node), and after `join` no node holds a key.
#[test]
fn redis_cluster_serves_pools_from_any_node_and_a_dead_hosts_work_comes_back() {
    let cluster = Cluster::start("cluster-secret");
    let victim = Host::start(&cluster.url(0), 1);
    let _other = Host::start(&cluster.url(1), 1);
    // Pools until one lives on a node its driver's URL does not name, so
    // that its commands are redirected.
    let mut moved = None;
    for _ in 0..12 {
        let pool = builder(&cluster.url(2))
            .hosts(2)
            .exit_hook(tally)
            .build(start, 3u64)
            .unwrap();
        let home = (0..3).find(|&i| cluster.keys_of(i).iter().any(|k| k.ends_with(":hello")));
        assert!(home.is_some(), "no node holds the pool's hello");
        assert_eq!(pool.apply(square, 4).unwrap(), 19);
        if home != Some(2) {
            moved = Some(pool);
            break;
        }
        pool.join().unwrap();
    }
    let pool = moved.expect("a pool on another node than its URL's (12 tries)");
    let want: Vec<u64> = (0..20_000u64).map(|x| x * x + 3).collect();
    assert_eq!(pool.map(square, 0..20_000u64).unwrap(), want);
    let firsts: Vec<u64> = pool.imap(square, 0..300u64).map(Result::unwrap).collect();
    assert_eq!(firsts, want[..300]);
    assert_eq!(pool.broadcast(whoami, ()).unwrap().len(), 2);
    let victim_pid = victim.pid();
    std::thread::scope(|s| {
        let map = s.spawn(|| pool.call().chunk_size(1).map(nap, vec![40u64; 60]));
        std::thread::sleep(Duration::from_millis(400));
        victim.signal(Signal::SIGKILL);
        let hosts = map.join().unwrap().unwrap();
        assert_eq!(hosts.len(), 60);
        assert!(
            hosts.contains(&victim_pid),
            "the victim ran some before it died"
        );
    });
    // The surviving host's one worker ran its exit hook.
    assert_eq!(pool.join_with(tally).unwrap().len(), 1);
    assert_cluster_clean(&cluster);
    drop(victim);
}

/// A Redis Cluster whose primary holding a pool dies mid-map: its replica
/// takes over (with what it had replicated), and the map completes, each
/// input with its one outcome, nothing left behind.
#[test]
fn redis_cluster_primary_failover_mid_map_loses_no_input() {
    let mut cluster = Cluster::start_replicated("cluster-secret");
    // Every URL names a replica: the primary that dies is none of them.
    let replicas: Vec<usize> = (0..6).filter(|&i| !cluster.is_primary(i)).collect();
    assert_eq!(replicas.len(), 3);
    let _hosts = [
        Host::start(&cluster.url(replicas[0]), 1),
        Host::start(&cluster.url(replicas[1]), 1),
    ];
    let pool = builder(&cluster.url(replicas[2]))
        .hosts(2)
        .build(start, 1u64)
        .unwrap();
    let home = (0..6)
        .find(|&i| {
            cluster.is_primary(i) && cluster.keys_of(i).iter().any(|k| k.ends_with(":hello"))
        })
        .expect("a primary holds the pool");
    let want: Vec<u64> = (0..400u64).map(|x| x * x + 1).collect();
    std::thread::scope(|s| {
        let map = s.spawn(|| {
            let t = Instant::now();
            let got: Vec<u64> = pool
                .call()
                .chunk_size(1)
                .imap(square_slowly, 0..400u64)
                .map(Result::unwrap)
                .collect();
            (got, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(500));
        cluster.kill(home);
        let (got, took) = map.join().unwrap();
        assert_eq!(got, want);
        assert!(took < Duration::from_secs(60), "took {took:?}");
    });
    // The cluster serves the pool on: a replica took the dead one's slots.
    assert_eq!(pool.apply(square, 6).unwrap(), 37);
    assert!(
        replicas.iter().any(|&i| cluster.is_primary(i)),
        "no failover"
    );
    pool.join().unwrap();
    assert_cluster_clean(&cluster);
}

/// A Redis Cluster over TLS with a private CA: the certificates reach the
/// cluster client, for the nodes the first one names too.
#[test]
fn redis_cluster_over_tls_with_a_private_ca_serves_a_pool() {
    let cluster = Cluster::start_tls("cluster-secret");
    let _hosts = [
        Host::start_tls(&cluster.url(0), 1, &cluster.ca()),
        Host::start_tls(&cluster.url(1), 1, &cluster.ca()),
    ];
    let pool = builder(&cluster.url(2))
        .redis_ca(cluster.ca())
        .hosts(2)
        .build(start, 1u64)
        .unwrap();
    let want: Vec<u64> = (0..5000u64).map(|x| x * x + 1).collect();
    assert_eq!(pool.map(square, 0..5000u64).unwrap(), want);
    assert_eq!(pool.broadcast(whoami, ()).unwrap().len(), 2);
    pool.join().unwrap();
    assert_cluster_clean(&cluster);
}
