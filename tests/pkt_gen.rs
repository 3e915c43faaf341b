//! The `pkt_gen` example as a script written for C pkt-gen runs it: its
//! flags, its report and summary lines, its exit codes, on the embedded
//! kernel (both pipe ends in one process, `--pair`) and on AF_PACKET over a
//! veth pair.
//!
//! Each test runs the example binary that `cargo test` builds beside the
//! tests; a run of this test target alone, without the examples, skips them
//! and says so (`cargo build --profile test --all-features --examples`
//! builds them).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use netmap_test_support::{examples, netns::Netns};

/// What a run printed.
struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Collects a child's output in threads (so that it never blocks on a full
/// pipe); stderr lines also go to `lines` as they come.
struct Running {
    child: Child,
    stdout: thread::JoinHandle<String>,
    stderr: thread::JoinHandle<String>,
    lines: mpsc::Receiver<String>,
    stdout_lines: mpsc::Receiver<String>,
}

fn reader(r: impl Read + Send + 'static, tx: mpsc::Sender<String>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    })
}

fn start(cmd: &mut Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pkt_gen");
    let (etx, lines) = mpsc::channel();
    let (otx, stdout_lines) = mpsc::channel();
    let stdout = reader(child.stdout.take().expect("stdout"), otx);
    let stderr = reader(child.stderr.take().expect("stderr"), etx);
    Running {
        child,
        stdout,
        stderr,
        lines,
        stdout_lines,
    }
}

impl Running {
    /// Waits up to `limit` for the exit; kills the child and fails after it.
    fn finish(mut self, limit: Duration) -> Out {
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for pkt_gen") {
                break s;
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "pkt_gen ran longer than {limit:?}:\n{}{}",
                    self.stdout.join().unwrap_or_default(),
                    self.stderr.join().unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        Out {
            status,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }

    /// Waits up to `limit` for a line of `stream` containing `what`.
    fn wait_line(&self, stdout: bool, what: &str, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let rx = if stdout { &self.stdout_lines } else { &self.lines };
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(what) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

/// Runs pkt_gen with `args` (bounded by `limit`), or `None` (skipping
/// `test`) when the example is not built.
fn run(test: &str, args: &[&str], limit: Duration) -> Option<Out> {
    let bin = examples::binary(test, "pkt_gen")?;
    Some(start(Command::new(bin).args(args)).finish(limit))
}

/// `Sent|Received N packets B bytes E events S bytes each in T seconds.`:
/// (N, B, E, S).
fn summary(stdout: &str, what: &str) -> (u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{what} ")))
        .unwrap_or_else(|| panic!("no `{what}` line in:\n{stdout}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (w[2], w[4], w[6], w[8], w[9], w[10], w[12]),
        ("packets", "bytes", "events", "bytes", "each", "in", "seconds."),
        "{line}"
    );
    let n = |i: usize| w[i].parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
    w[11].parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
    (n(1), n(3), n(5), n(7))
}

/// The `Speed: ...` lines, each checked against C's format.
fn speed_lines(stdout: &str) -> usize {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Speed: ")).collect();
    for l in &lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert!(w.len() == 12 || w.len() == 13, "{l}");
        assert!(l.contains(" Bandwidth: ") && l.contains("bps (raw ") && l.contains("). Average batch: "));
        assert!(l.ends_with(" pkts"), "{l}");
    }
    lines.len()
}

fn text_ok(out: &Out) -> String {
    format!(
        "status {:?}\nstdout:\n{}stderr:\n{}",
        out.status, out.stdout, out.stderr
    )
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn help_explains_every_flag() {
    let Some(out) = run("help_explains_every_flag", &["--help"], LIMIT) else {
        return;
    };
    assert!(out.status.success(), "{}", text_ok(&out));
    for flag in [
        "-h",
        "-i PORT",
        "-f FUNCTION",
        "-n COUNT",
        "-l LEN",
        "-b BURST",
        "-R RATE",
        "-w SECS",
        "-W ",
        "-T MS",
        "-p THREADS",
        "-a CPU",
        "-c CPUS",
        "-z",
        "-Z",
        "-s IP",
        "-d IP",
        "-S MAC",
        "-D MAC",
        "-C TXSLOTS",
        "-F FRAGS",
        "-N ",
        "-B ",
        "--pair PEER",
        "--duration SECS",
        "--fallback",
        "--promisc",
        "--busy",
        "txseq",
        "rxseq",
        "Payload policy",
    ] {
        assert!(
            out.stdout.contains(flag),
            "--help does not explain {flag}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message_and_the_usage() {
    for args in [
        &["-i", "emu:x{1", "--no-such-flag"][..],
        &["-i", "emu:x{1", "-f", "bogus"],
        &["-f", "tx"],
        &["-i", "emu:x{1", "-l", "5"],
        &["-i", "emu:x{1", "-l", "100", "-l", "200"],
        &["-i", "emu:x{1", "-n", "many"],
        &["-i", "emu:x{1", "-s", "10.0.0.300"],
        &["-i", "emu:x{1", "-D", "aa:bb"],
        &["-i", "emu:x{1", "-F", "64"],
        &["-i", "emu:x{1", "-X"],
    ] {
        let Some(out) = run("bad_arguments_exit_2_with_a_message_and_the_usage", args, LIMIT) else {
            return;
        };
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text_ok(&out));
        assert!(out.stderr.starts_with("pkt_gen: "), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("usage: pkt_gen -i PORT"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn tx_rx_pair_on_emu_moves_n_packets() {
    let Some(out) = run(
        "tx_rx_pair_on_emu_moves_n_packets",
        &[
            "-i",
            "emu:pgtx{1",
            "--pair",
            "emu:pgtx}1",
            "-f",
            "tx",
            "-n",
            "300000",
        ],
        LIMIT,
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text_ok(&out));
    let (n, bytes, events, size) = summary(&out.stdout, "Sent");
    assert_eq!((n, bytes, size), (300_000, 300_000 * 60, 60), "{}", out.stdout);
    assert!(events > 0 && events <= n, "{}", out.stdout);
    let (n, bytes, _, size) = summary(&out.stdout, "Received");
    assert_eq!((n, bytes, size), (300_000, 300_000 * 60, 60), "{}", out.stdout);
    assert_eq!(speed_lines(&out.stdout), 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("Sending on emu:pgtx{1: 1 queues, 1 threads and"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("on embedded (emu) backend"), "{}", out.stdout);
}

#[test]
fn txseq_rxseq_report_no_loss() {
    let Some(out) = run(
        "txseq_rxseq_report_no_loss",
        &[
            "-i",
            "emu:pgseq{1",
            "--pair",
            "emu:pgseq}1",
            "-f",
            "txseq",
            "-n",
            "200000",
        ],
        LIMIT,
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text_ok(&out));
    assert_eq!(summary(&out.stdout, "Received").0, 200_000, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("Sequence: 200000 packets checked, 0 lost, 0 out of order, 0 too short."),
        "{}",
        text_ok(&out)
    );
}

/// -F: each packet goes as that many slots, and arrives whole and in order.
#[test]
fn fragments_arrive_whole_and_in_order() {
    let Some(out) = run(
        "fragments_arrive_whole_and_in_order",
        &[
            "-i",
            "emu:pgfr{1",
            "--pair",
            "emu:pgfr}1",
            "-f",
            "txseq",
            "-F",
            "5",
            "-l",
            "300",
            "-n",
            "50000",
        ],
        LIMIT,
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text_ok(&out));
    assert_eq!(
        summary(&out.stdout, "Received"),
        (50_000, 50_000 * 300, summary(&out.stdout, "Received").2, 300)
    );
    assert!(
        out.stdout
            .contains("Sequence: 50000 packets checked, 0 lost, 0 out of order, 0 too short."),
        "{}",
        text_ok(&out)
    );
}

#[test]
fn sigterm_mid_run_prints_the_summary_and_exits_0() {
    let test = "sigterm_mid_run_prints_the_summary_and_exits_0";
    let Some(bin) = examples::binary(test, "pkt_gen") else {
        return;
    };
    // No -n: it runs until the signal (or, should that be lost, --duration).
    let running = start(Command::new(bin).args([
        "-i",
        "emu:pgsig{1",
        "--pair",
        "emu:pgsig}1",
        "-f",
        "tx",
        "-R",
        "100000",
        "-T",
        "100",
        "--duration",
        "50",
    ]));
    assert!(
        running.wait_line(false, "main_thread", Duration::from_secs(20)),
        "no report line within 20 s"
    );
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    let r = unsafe { libc::kill(running.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0);
    let started = Instant::now();
    let out = running.finish(LIMIT);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{}", text_ok(&out));
    let sent = summary(&out.stdout, "Sent").0;
    let received = summary(&out.stdout, "Received").0;
    assert!(sent > 0 && received > 0 && received <= sent, "{}", out.stdout);
    assert!(out.stderr.contains("received signal 15"), "{}", out.stderr);
}

#[test]
fn report_interval_lines_come_every_t_milliseconds() {
    let Some(out) = run(
        "report_interval_lines_come_every_t_milliseconds",
        &[
            "-i",
            "emu:pgT{1",
            "--pair",
            "emu:pgT}1",
            "-f",
            "tx",
            "-R",
            "50000",
            "-T",
            "100",
            "--duration",
            "1.5",
        ],
        LIMIT,
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text_ok(&out));
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(" main_thread ["))
        .collect();
    assert!(lines.len() >= 8, "{} lines:\n{}", lines.len(), out.stderr);
    for l in &lines {
        // TIME main_thread [LINE] P U pps (N U pkts B U bps in USEC usec) A avg_batch S min_space
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w.len(), 16, "{l}");
        assert!(
            w[4].ends_with("pps") && w[6].ends_with("pkts") && w[8].ends_with("bps"),
            "{l}"
        );
        assert_eq!(
            (w[9], w[11], w[13], w[15]),
            ("in", "usec)", "avg_batch", "min_space"),
            "{l}"
        );
        let usec: u64 = w[10].parse().unwrap_or_else(|_| panic!("{l}"));
        assert!((10_000..=1_000_000).contains(&usec), "{l}");
    }
    // The middle lines (not the first, or the last of a partial interval)
    // show the -R rate: 50 Kpps.
    let mid = lines[lines.len() / 2];
    assert!(mid.split_whitespace().nth(4) == Some("Kpps"), "{mid}");
}

#[test]
fn a_length_range_gives_lengths_in_range() {
    let n = 100_000u64;
    let Some(out) = run(
        "a_length_range_gives_lengths_in_range",
        &[
            "-i",
            "emu:pgl{1",
            "--pair",
            "emu:pgl}1",
            "-f",
            "tx",
            "-n",
            "100000",
            "-l",
            "200",
            "-l",
            "100",
        ],
        LIMIT,
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text_ok(&out));
    let (pkts, bytes, _, size) = summary(&out.stdout, "Received");
    assert_eq!(pkts, n, "{}", out.stdout);
    // C's range: from the second -l (included) to the first (excluded).
    assert!(bytes >= 100 * n && bytes <= 199 * n, "{}", out.stdout);
    assert!((130..=170).contains(&size), "lengths not spread: {}", out.stdout);
    assert_eq!(summary(&out.stdout, "Sent").1, bytes, "{}", out.stdout);
}

#[test]
fn ping_pong_prints_rtt_and_a_histogram() {
    let Some(out) = run(
        "ping_pong_prints_rtt_and_a_histogram",
        &[
            "-i",
            "emu:pgp{1",
            "--pair",
            "emu:pgp}1",
            "-f",
            "ping",
            "-n",
            "2000",
        ],
        LIMIT,
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text_ok(&out));
    let rtt = out
        .stderr
        .lines()
        .find(|l| l.contains("RTT over 2000 packets: min "))
        .unwrap_or_else(|| panic!("no RTT line:\n{}", out.stderr));
    assert!(rtt.ends_with(" ns"), "{rtt}");
    assert!(out.stderr.contains("] k: "), "no histogram:\n{}", out.stderr);
}

#[test]
fn afpacket_over_veth_moves_n_packets() {
    over_veth_moves_n_packets("afpacket_over_veth_moves_n_packets", "afpacket", "AF_PACKET");
}

#[test]
fn afxdp_over_veth_moves_n_packets() {
    over_veth_moves_n_packets("afxdp_over_veth_moves_n_packets", "afxdp", "AF_XDP");
}

/// pkt_gen's receiver on `SCHEME:vb` and sender on `SCHEME:va`, in a
/// namespace: both name `backend` in their header, and every packet arrives.
fn over_veth_moves_n_packets(test: &str, scheme: &str, backend: &str) {
    let Some(bin) = examples::binary(test, "pkt_gen") else {
        return;
    };
    let Some(ns) = Netns::new(test) else {
        return;
    };
    let netns = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns.name()]).arg(&bin).args(args);
        c
    };
    let (va, vb) = (format!("{scheme}:va"), format!("{scheme}:vb"));
    let rx = start(&mut netns(&[
        "-i",
        &vb,
        "-f",
        "rx",
        "-n",
        "2000",
        "--duration",
        "30",
    ]));
    assert!(
        rx.wait_line(true, &format!("on {backend} backend"), Duration::from_secs(20)),
        "the receiver did not open its port on {backend}"
    );
    let tx = start(&mut netns(&["-i", &va, "-f", "tx", "-n", "2000", "-R", "10000"])).finish(LIMIT);
    assert!(tx.status.success(), "{}", text_ok(&tx));
    assert!(
        tx.stdout.contains(&format!("on {backend} backend")),
        "{}",
        tx.stdout
    );
    assert_eq!(summary(&tx.stdout, "Sent").0, 2000, "{}", tx.stdout);
    // As C, the default source MAC is the interface's own.
    let mac = Command::new("ip")
        .args(["netns", "exec", ns.name(), "cat", "/sys/class/net/va/address"])
        .output()
        .expect("reading va's address");
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_owned();
    assert!(
        mac.len() == 17 && tx.stdout.contains(&format!("({mac} -> ff:ff:ff:ff:ff:ff)")),
        "source MAC {mac:?} not in {}",
        tx.stdout
    );
    let rx = rx.finish(LIMIT);
    assert!(rx.status.success(), "{}", text_ok(&rx));
    assert_eq!(
        summary(&rx.stdout, "Received"),
        (2000, 2000 * 60, summary(&rx.stdout, "Received").2, 60),
        "{}",
        rx.stdout
    );
}

#[test]
fn threads_get_a_ring_each_with_p_and_c() {
    let Some(out) = run(
        "threads_get_a_ring_each_with_p_and_c",
        &[
            "-i",
            "emu:pgp2{1",
            "--pair",
            "emu:pgp2}1",
            "-C",
            "0,0,2",
            "-p",
            "2",
            "-a",
            "0",
            "-f",
            "tx",
            "-n",
            "200001",
        ],
        LIMIT,
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text_ok(&out));
    assert!(
        out.stdout
            .contains("Sending on emu:pgp2{1: 2 queues, 2 threads and"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Receiving from emu:pgp2}1: 2 queues, 2 threads and"),
        "{}",
        out.stdout
    );
    assert_eq!(summary(&out.stdout, "Sent").0, 200_001, "{}", out.stdout);
    assert_eq!(summary(&out.stdout, "Received").0, 200_001, "{}", out.stdout);
}
