//! Packets per second through an embedded-kernel pipe with its two ends in
//! one process (a sender thread and a receiver thread) and in two (this
//! binary runs itself again as the other end: `emu:NAME{1` in one process
//! and `emu:NAME}1` in the other are the two ends of one pipe).
//!
//! `cargo bench --bench procs` (add `-- --packets N --runs R` to change the
//! workload). Both layouts run the same code: the sender stages up to
//! `BATCH` packets, each carrying its sequence number, and syncs; the
//! receiver syncs, reads every packet waiting, checks its number (a lost or
//! reordered packet stops the benchmark) and counts it. Either side that
//! finds its ring full or empty syncs again up to `SPIN` times, then waits in
//! `Netmap::poll` / `poll_writable`. The receiver times from the sync that
//! brought it the first packets to the one that brought it the last: the
//! rate is the packets after that first batch over that time, so opening
//! the ports and starting the other process are not in it.
//!
//! Each run opens a pipe of its own, `emu:nmrs_procs_PID_RUN`, so concurrent
//! runs never meet. The receiver opens its end (the master, `{1`) first and
//! says it is ready; then the sender opens the slave end (`}1`). Runs of the
//! two layouts alternate (one warm-up run of each first), the two-process
//! runs alternating which process receives, and the medians are compared.
//!
//! The child is this binary with `NETMAP_RS_BENCH_PROCS_ROLE` (`recv` or
//! `send`), `_PORT` and `_PACKETS` set; a receiving child reports its time
//! on standard output. A side whose peer has ended (a thread that returned
//! or panicked, a process that exited, a parent that closed the child's
//! standard input or died) and whose ring stays full or empty fails at
//! once, so a failure on one side ends both, and they close their ports:
//! the pipe's files in `/dev/shm` go with the last of them.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;
use netmap_test_support::bench::Opts;

const BATCH: usize = 256;
const SLOTS: u32 = 1024;
const LEN: usize = 60;
/// Syncs of a full (TX) or empty (RX) ring before waiting in a poll.
const SPIN: u32 = 32;
/// How long one poll waits before the side looks again.
const POLL: Duration = Duration::from_millis(100);
/// How long a side waits for its peer without any progress before it gives
/// up (the peer died, or never came).
const PATIENCE: Duration = Duration::from_secs(10);

/// The child's role: `recv` or `send`. Set only in the child.
const ROLE_VAR: &str = "NETMAP_RS_BENCH_PROCS_ROLE";
/// The port the child opens.
const PORT_VAR: &str = "NETMAP_RS_BENCH_PROCS_PORT";
/// How many packets the child sends or receives.
const PACKETS_VAR: &str = "NETMAP_RS_BENCH_PROCS_PACKETS";

fn opts() -> Opts {
    let mut o = Opts::from_args(Opts {
        packets: 4_000_000,
        runs: 5,
    });
    // Fewer would leave nothing after the receiver's first batch to time.
    o.packets = o.packets.max(SLOTS as usize * 4);
    o
}

fn open(name: &str) -> Netmap {
    NetmapBuilder::new(name)
        .num_slots(SLOTS)
        .build()
        .unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// What one side does while its ring is full or empty: sync again up to
/// [`SPIN`] times, then poll. It gives up when a poll finds nothing after
/// an earlier one found the other side gone (`gone`: a thread or process
/// that ended; it cannot publish anything after that), or after
/// [`PATIENCE`] without progress (the other side hangs).
struct Idle<G: FnMut() -> bool> {
    spins: u32,
    since: Instant,
    peer_gone: bool,
    what: &'static str,
    gone: G,
}

impl<G: FnMut() -> bool> Idle<G> {
    fn new(what: &'static str, gone: G) -> Self {
        Idle {
            spins: 0,
            since: Instant::now(),
            peer_gone: false,
            what,
            gone,
        }
    }

    fn progress(&mut self) {
        self.spins = 0;
        self.peer_gone = false;
    }

    fn wait(&mut self, poll: impl FnOnce(Option<Duration>) -> Result<bool, Error>) {
        if self.spins == 0 {
            self.since = Instant::now();
        }
        self.spins += 1;
        if self.spins <= SPIN {
            std::hint::spin_loop();
            return;
        }
        let ready = poll(Some(POLL)).unwrap_or_else(|e| panic!("poll for {}: {e}", self.what));
        if ready {
            return;
        }
        if self.peer_gone {
            panic!("no {}, and the other end has ended", self.what);
        }
        self.peer_gone = (self.gone)();
        if self.since.elapsed() > PATIENCE {
            panic!("no {} for {PATIENCE:?}: does the other end hang?", self.what);
        }
    }
}

/// Sends `packets` packets numbered from 0 on the TX ring of `name`.
/// `gone` tells whether the receiver has ended.
fn send(name: &str, packets: u64, gone: impl FnMut() -> bool) {
    let port = open(name);
    let mut tx = port.tx_ring(0).expect("TX ring");
    assert_eq!(tx.num_slots(), SLOTS as usize, "TX ring size of {name}");
    let mut pkt = [0x5au8; LEN];
    let mut seq = 0u64;
    let mut idle = Idle::new("room in the TX ring", gone);
    while seq < packets {
        let n = BATCH.min(tx.space()).min((packets - seq) as usize);
        for _ in 0..n {
            pkt[..8].copy_from_slice(&seq.to_le_bytes());
            tx.send(&pkt).expect("send");
            seq += 1;
        }
        tx.sync().expect("txsync");
        if n > 0 || tx.space() > 0 {
            idle.progress();
        } else {
            idle.wait(|t| port.poll_writable(t));
        }
    }
    // Every packet has gone to the kernel with the last sync; the pipe
    // keeps them for the receiver after this end closes.
}

/// What the receiver timed: `packets` packets after its first batch, in
/// `time`.
#[derive(Clone, Copy)]
struct Sample {
    packets: u64,
    time: Duration,
}

impl Sample {
    fn mpps(&self) -> f64 {
        self.packets as f64 / self.time.as_secs_f64() / 1e6
    }
}

/// Opens `name`, calls `ready`, then receives `packets` packets and checks
/// that they come numbered from 0, one by one. `gone` tells whether the
/// sender has ended.
fn receive(name: &str, packets: u64, ready: impl FnOnce(), gone: impl FnMut() -> bool) -> Sample {
    let port = open(name);
    let mut rx = port.rx_ring(0).expect("RX ring");
    assert_eq!(rx.num_slots(), SLOTS as usize, "RX ring size of {name}");
    ready();
    let mut next = 0u64;
    let mut first: Option<(Instant, u64)> = None;
    let mut last = Instant::now();
    let mut idle = Idle::new("packet in the RX ring", gone);
    while next < packets {
        rx.sync().expect("rxsync");
        if rx.is_empty() {
            idle.wait(|t| port.poll(t));
            continue;
        }
        last = Instant::now();
        idle.progress();
        let before = next;
        for f in rx.iter() {
            let p = f.payload();
            assert_eq!(p.len(), LEN, "length of packet {next}");
            let seq = u64::from_le_bytes(p[..8].try_into().unwrap());
            if seq != next {
                panic!("packet {next} expected, packet {seq} received: packets lost or out of order");
            }
            next += 1;
        }
        first.get_or_insert((last, next - before));
    }
    assert_eq!(next, packets, "more packets received than sent");
    rx.sync().expect("rxsync");
    assert!(rx.is_empty(), "more packets received than sent");
    let (start, batch) = first.expect("packets received");
    Sample {
        packets: packets - batch,
        time: last - start,
    }
}

/// One process, two threads.
fn run_threads(name: &str, packets: u64) -> Sample {
    // The receiver opens first, so it takes the master end: a slave end
    // opens only while its master is open.
    let (recv_end, send_end) = (format!("{name}{{1"), format!("{name}}}1"));
    let (recv_done, send_done) = (Done::default(), Done::default());
    let (recv_flag, send_flag) = (recv_done.flag(), send_done.flag());
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = thread::spawn(move || {
        let _done = recv_done;
        receive(
            &recv_end,
            packets,
            || ready_tx.send(()).unwrap(),
            || send_flag.load(Ordering::Acquire),
        )
    });
    if ready_rx.recv().is_err() {
        // The receiver died before it was ready: its panic says why.
        receiver.join().expect("receiver");
        unreachable!("the receiver ended before it was ready");
    }
    let sender = thread::spawn(move || {
        let _done = send_done;
        send(&send_end, packets, || recv_flag.load(Ordering::Acquire))
    });
    // Both end, also when one fails (the other finds it gone), so that
    // their ports close and the pipe's file goes before a panic here.
    let (received, sent) = (receiver.join(), sender.join());
    let sample = received.expect("the receiver failed");
    sent.expect("the sender failed");
    sample
}

/// Set when a thread ends, also by a panic (on drop).
#[derive(Default)]
struct Done(Arc<AtomicBool>);

impl Done {
    /// What the other thread reads.
    fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A child process. Its standard input stays open while this lives: the
/// child takes end of file there (also when this process dies) for its
/// parent gone, and then ends by itself, closing its port, so that the
/// last one to leave the pipe removes its file; a kill would leave the file
/// behind.
struct Child(std::process::Child);

impl Child {
    fn spawn(role: &str, port: &str, packets: u64) -> Self {
        let exe = std::env::current_exe().expect("this benchmark's executable");
        let child = Command::new(exe)
            .env(ROLE_VAR, role)
            .env(PORT_VAR, port)
            .env(PACKETS_VAR, packets.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child process");
        Child(child)
    }

    /// The child's next line on its standard output.
    fn line(&mut self, out: &mut impl BufRead, what: &str) -> String {
        let mut line = String::new();
        out.read_line(&mut line).expect("read from the child");
        if line.is_empty() {
            self.finish();
            panic!("the child ended without {what}");
        }
        line.trim_end().to_owned()
    }

    /// Whether the child has ended.
    fn ended(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }

    /// Waits for the child; panics unless it succeeded.
    fn finish(&mut self) {
        let status = self.0.wait().expect("wait for the child");
        assert!(status.success(), "the child process failed: {status}");
    }
}

impl Drop for Child {
    /// Tells a child still running that its parent is gone and lets it end
    /// (it does within a few polls, or [`PATIENCE`]), killing it only if it
    /// does not.
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + 2 * PATIENCE;
        while let Ok(None) = self.0.try_wait() {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Two processes: this one and a child that receives (`child_receives`) or
/// sends.
fn run_procs(name: &str, packets: u64, child_receives: bool) -> Sample {
    // As in `run_threads`.
    let (recv_end, send_end) = (format!("{name}{{1"), format!("{name}}}1"));
    if child_receives {
        let mut child = Child::spawn("recv", &recv_end, packets);
        let mut out = BufReader::new(child.0.stdout.take().expect("the child's stdout"));
        let line = child.line(&mut out, "saying it is ready");
        assert_eq!(line, "ready", "the child's first line");
        send(&send_end, packets, || child.ended());
        let line = child.line(&mut out, "its result");
        child.finish();
        let mut words = line.strip_prefix("result ").expect("a result line").split(' ');
        let mut num = || -> u64 { words.next().and_then(|w| w.parse().ok()).expect("a number") };
        let (packets, nanos) = (num(), num());
        Sample {
            packets,
            time: Duration::from_nanos(nanos),
        }
    } else {
        let child = RefCell::new(None);
        let sample = receive(
            &recv_end,
            packets,
            || *child.borrow_mut() = Some(Child::spawn("send", &send_end, packets)),
            || child.borrow_mut().as_mut().is_some_and(Child::ended),
        );
        child.into_inner().expect("the child").finish();
        sample
    }
}

/// The child's side: the role its parent gave it.
fn child(role: &str) {
    let port = std::env::var(PORT_VAR).expect(PORT_VAR);
    let packets: u64 = std::env::var(PACKETS_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect(PACKETS_VAR);
    // The parent has ended, or given up, at end of file on standard input.
    let ended = Arc::new(AtomicBool::new(false));
    let flag = ended.clone();
    thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        flag.store(true, Ordering::Release);
    });
    let gone = || ended.load(Ordering::Acquire);
    match role {
        "recv" => {
            let ready = || {
                let mut out = std::io::stdout();
                writeln!(out, "ready").and_then(|()| out.flush()).expect("stdout");
            };
            let s = receive(&port, packets, ready, gone);
            println!("result {} {}", s.packets, s.time.as_nanos());
        }
        "send" => send(&port, packets, gone),
        _ => panic!("{ROLE_VAR}={role}: neither recv nor send"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_VAR) {
        child(&role);
        return;
    }
    let o = opts();
    let packets = o.packets as u64;
    println!(
        "netmap-rs process benchmark: embedded-kernel pipe, {SLOTS}-slot rings, {LEN}-byte packets, batches of {BATCH}, {} packets x {} runs (medians)",
        o.packets, o.runs
    );
    let pid = std::process::id();
    let mut n = 0;
    let mut name = || {
        n += 1;
        format!("emu:nmrs_procs_{pid}_{n}")
    };
    // Warm up both layouts.
    run_threads(&name(), packets);
    run_procs(&name(), packets, true);
    let (mut threads, mut procs) = (vec![], vec![]);
    for run in 0..o.runs {
        let child_receives = run % 2 == 0;
        let t = run_threads(&name(), packets);
        let p = run_procs(&name(), packets, child_receives);
        println!(
            "run {:<3} threads {:6.2} Mpps   processes {:6.2} Mpps (receiver: {})",
            run + 1,
            t.mpps(),
            p.mpps(),
            if child_receives { "child" } else { "parent" }
        );
        threads.push(t.mpps());
        procs.push(p.mpps());
    }
    let (t, p) = (median(threads), median(procs));
    println!(
        "pipe     threads {t:6.2} Mpps   processes {p:6.2} Mpps   processes/threads {:.3}",
        p / t
    );
}
