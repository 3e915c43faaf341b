//! The `mio_server` example, end to end: the binary runs, its TCP endpoint
//! on loopback reports counters that grow while its generator's packets
//! flow through the forwarder both ways (without a copy in one region, with
//! one across two), clients that misbehave are answered or dropped without
//! disturbing the others, and `stop`, SIGTERM and SIGINT end it with exit
//! status 0.
//!
//! Every wait is bounded; a server left running by a failing test is killed
//! by [`Server`]'s `Drop`. The tests need the example binary, which the
//! whole `cargo test` builds; `cargo test --test mio_server` alone does not
//! (build it first with `cargo build --profile test --example mio_server`),
//! and then each test says it is skipped ([`netmap_test_support::skip`]).

#![cfg(feature = "mio")]

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use netmap_test_support::examples;

/// The generator's pace (packets/s each way): enough to see the counters
/// move, gentle on a shared machine.
const RATE: &str = "20000";
/// How long the server may take to start listening.
const START: Duration = Duration::from_secs(30);
/// How long counters may take to show traffic, or to grow.
const TRAFFIC: Duration = Duration::from_secs(20);
/// How long one reply may take.
const REPLY: Duration = Duration::from_secs(5);
/// How long the server may take to exit once told to.
const EXIT: Duration = Duration::from_secs(10);
/// How often the tests ask for counters while they wait for them to change.
const ASK_EVERY: Duration = Duration::from_millis(50);

/// `child`'s exit status, if it exits within `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `mio_server`, killed on drop if it is still running.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Its stdout, line by line, read by a thread.
    lines: Receiver<String>,
    /// Its stderr, read whole by a thread.
    stderr: Option<JoinHandle<String>>,
}

impl Server {
    /// Starts the example with `args` and waits for its `listening on`
    /// line; `None` (the test is skipped) if the example is not built.
    fn start(args: &[&str]) -> Option<Server> {
        let bin = examples::binary("a mio_server test", "mio_server")?;
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mio_server starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
            stderr: Some(stderr),
        };
        let deadline = Instant::now() + START;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        server.addr = addr.parse().expect("a socket address");
                        assert!(server.addr.ip().is_loopback(), "{line}");
                        return Some(server);
                    }
                }
                Err(e) => panic!(
                    "no `listening on` line within {START:?} ({e:?}); stderr: {}",
                    server.stderr()
                ),
            }
        }
    }

    /// Everything it wrote to stderr (after it exited, or was killed).
    fn stderr(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect_timeout(&self.addr, REPLY).expect("connect to mio_server");
        stream.set_read_timeout(Some(REPLY)).unwrap();
        stream.set_write_timeout(Some(REPLY)).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// Waits for it to exit on its own, for at most `EXIT`, and expects
    /// status 0 (`why` says what told it to stop); returns the stdout lines
    /// it wrote since `listening on`.
    fn exits_cleanly(&mut self, why: &str) -> Vec<String> {
        let Some(status) = exit_within(&mut self.child, EXIT) else {
            panic!(
                "mio_server still running {EXIT:?} after it was told to stop; stderr: {}",
                self.stderr()
            );
        };
        // Its stdout is closed now: the reader thread ends at its end.
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(REPLY) {
                Ok(line) => out.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stdout still open after exit: {out:?}"),
            }
        }
        assert!(
            status.success(),
            "mio_server exited with {status} on {why}; stderr: {}",
            self.stderr()
        );
        out
    }

    /// Sends it `signal`.
    fn signal(&self, signal: i32) {
        // SAFETY: kill takes no pointers; the pid is our child's, not yet
        // reaped (the child is only waited for by `exits_cleanly` and `Drop`).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One TCP client of the server.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to mio_server");
    }

    /// The next line, without its newline; `None` at the end of the stream.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
            Err(e) => panic!("reading a reply: {e} (after {line:?})"),
        }
    }

    /// Sends `request` and a newline; returns the reply line.
    fn ask(&mut self, request: &str) -> String {
        self.send(format!("{request}\n").as_bytes());
        self.line()
            .unwrap_or_else(|| panic!("the server closed the connection instead of answering {request:?}"))
    }

    /// Asks for counters until `done` holds for them, for at most
    /// `TRAFFIC`; returns them.
    fn counters_until(&mut self, what: &str, done: impl Fn(&Counters) -> bool) -> Counters {
        let deadline = Instant::now() + TRAFFIC;
        loop {
            let c = Counters::parse(&self.ask("stats"));
            if done(&c) {
                return c;
            }
            assert!(Instant::now() < deadline, "not {what} within {TRAFFIC:?}: {c:?}");
            thread::sleep(ASK_EVERY);
        }
    }

    /// Whether the server has closed the connection (end of stream, or a
    /// reset), waiting at most `REPLY`.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => true,
            Err(e) => panic!("not closed within {REPLY:?}: {e} (after {rest:?})"),
        }
    }
}

/// The `key=value` pairs of a counters line.
struct Counters {
    line: String,
    pairs: HashMap<String, String>,
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

impl Counters {
    fn parse(line: &str) -> Counters {
        let pairs = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Counters {
            line: line.to_owned(),
            pairs,
        }
    }

    fn get(&self, key: &str) -> u64 {
        let v = self
            .pairs
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {self:?}"));
        v.parse().unwrap_or_else(|_| panic!("{key}={v} is not a count"))
    }

    fn uptime(&self) -> f64 {
        self.pairs["uptime_s"].parse().expect("uptime_s is a number")
    }

    fn flowing(&self) -> bool {
        self.get("ab_packets") > 0 && self.get("ba_packets") > 0
    }
}

/// The first counters show packets forwarded both ways, later ones more in
/// each direction; `stop` is answered, closes the connection and ends the
/// server with status 0.
#[test]
fn counters_grow_while_packets_flow_and_stop_exits_0() {
    let Some(mut server) = Server::start(&["--rate", RATE]) else {
        return;
    };
    let mut c = server.connect();
    let first = c.counters_until("forwarding both ways", Counters::flowing);
    let more = |later: &Counters| {
        ["ab_packets", "ab_bytes", "ba_packets", "ba_bytes"]
            .iter()
            .all(|k| later.get(k) > first.get(k))
    };
    let second = c.counters_until("growing both ways", more);
    assert!(second.uptime() >= first.uptime(), "{first:?} then {second:?}");
    for (k, v) in [("ab_mode", "zero-copy"), ("ba_mode", "zero-copy")] {
        assert_eq!(
            second.pairs[k], v,
            "two pipes of one parent share a region: {second:?}"
        );
    }
    for k in ["dropped", "copied", "gen_bad"] {
        assert_eq!(second.get(k), 0, "{second:?}");
    }
    assert!(second.get("gen_received") > 0, "{second:?}");
    println!("counters: {first:?}\nthen: {second:?}");

    let reply = c.ask("stop");
    assert!(reply.starts_with("stopping "), "{reply:?}");
    let last = Counters::parse(&reply);
    assert!(last.get("ab_packets") >= second.get("ab_packets"), "{reply:?}");
    assert!(c.closed(), "the connection stays open after stop");
    let out = server.exits_cleanly("stop");
    let final_line = out.last().cloned().unwrap_or_default();
    assert!(final_line.starts_with("stopped by client 127.0.0.1:"), "{out:?}");
    assert!(Counters::parse(&final_line).flowing(), "{final_line}");
}

/// Ports of two regions (two pipe parents) cannot trade buffers: the first
/// packet meets `MemoryMismatch`, and from then on every packet is copied,
/// none lost.
#[test]
fn ports_of_two_regions_copy() {
    let Some(mut server) = Server::start(&["--generate", "--rate", RATE, "emu:left{1", "emu:right{1"]) else {
        return;
    };
    let mut c = server.connect();
    let first = c.counters_until("forwarding both ways", Counters::flowing);
    let second = c.counters_until("growing", |later| {
        later.get("ab_packets") > first.get("ab_packets") && later.get("ba_packets") > first.get("ba_packets")
    });
    for k in ["ab_mode", "ba_mode"] {
        assert_eq!(second.pairs[k], "copy", "{second:?}");
    }
    assert_eq!(
        second.get("copied"),
        second.get("ab_packets") + second.get("ba_packets"),
        "{second:?}"
    );
    for k in ["dropped", "gen_bad"] {
        assert_eq!(second.get(k), 0, "{second:?}");
    }
    assert!(c.ask("stop").starts_with("stopping "));
    server.exits_cleanly("stop");
    let err = server.stderr();
    assert_eq!(
        err.matches("copying from now on").count(),
        2,
        "one note per direction: {err}"
    );
}

/// Garbage, bytes that are not text, a line split over several writes,
/// pipelined requests, an idle client and one that sends a huge line: each
/// gets what it deserves, and the others keep being served.
#[test]
fn misbehaving_clients_do_not_disturb_the_others() {
    let Some(mut server) = Server::start(&["--rate", RATE]) else {
        return;
    };
    let mut good = server.connect();
    let _idle = server.connect(); // connected, never says a word
    assert!(good.ask("stats").starts_with("stats "));

    // Garbage gets an error line, and the connection goes on.
    let mut rude = server.connect();
    let reply = rude.ask("GET / HTTP/1.0");
    assert!(reply.starts_with("error: unknown command"), "{reply:?}");
    rude.send(b"\xff\xfe\x00\x01\n");
    let reply = rude.line().expect("an answer to binary garbage");
    assert!(reply.starts_with("error: unknown command"), "{reply:?}");
    assert!(rude.ask("stats").starts_with("stats "));

    // A request split over writes is answered once it is whole, while
    // another client is served in between; CRLF is accepted.
    let mut slow = server.connect();
    slow.send(b"sta");
    assert!(good.ask("stats").starts_with("stats "));
    slow.send(b"ts\r");
    slow.send(b"\n");
    assert!(slow.line().expect("stats").starts_with("stats "));

    // Pipelined requests get their replies in order.
    let mut eager = server.connect();
    eager.send(b"help\nstats\n\nhelp\n");
    let replies: Vec<String> = (0..3).map(|_| eager.line().expect("a reply")).collect();
    assert!(replies[0].starts_with("commands: "), "{replies:?}");
    assert!(replies[1].starts_with("stats "), "{replies:?}");
    assert_eq!(replies[2], replies[0]);

    // A line longer than the server takes, without a newline: an error
    // line (unless the reset of the closing socket beats it), then the
    // connection is closed.
    let mut flood = server.connect();
    // The server may close before it has read all of it.
    let _ = flood.stream.write_all(&[b'x'; 8192]);
    let mut reply = String::new();
    match flood.reader.read_line(&mut reply) {
        Ok(_) => assert!(
            reply.is_empty() || reply.starts_with("error: line longer than"),
            "{reply:?}"
        ),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(flood.closed(), "a client sending a huge line stays connected");

    // `quit` says goodbye and closes.
    assert_eq!(rude.ask("quit"), "bye");
    assert!(rude.closed());

    // Everyone else is still served, the flood included in nothing.
    let c = Counters::parse(&good.ask("stats"));
    assert!(c.get("clients") >= 4, "good, idle, slow, eager: {c:?}");
    assert!(slow.ask("stats").starts_with("stats "));
    assert!(good.ask("stop").starts_with("stopping "));
    server.exits_cleanly("stop");
}

/// A client that floods the server with requests and reads none of the
/// replies is disconnected once they pile up past what the socket holds;
/// another is served all along.
#[test]
fn a_client_that_does_not_read_is_disconnected() {
    let Some(mut server) = Server::start(&["--rate", RATE]) else {
        return;
    };
    let mut good = server.connect();
    let mut hog = server.connect();
    // Far more replies than the loopback socket buffers hold. The server may
    // hang up before it has read them all.
    let _ = hog.stream.write_all(&b"stats\n".repeat(200_000));
    assert!(good.ask("stats").starts_with("stats "));
    assert!(hog.closed(), "a client that reads nothing stays connected");
    let c = Counters::parse(&good.ask("stats"));
    assert_eq!(c.get("clients"), 1, "the hog is gone: {c:?}");
    assert!(good.ask("stop").starts_with("stopping "));
    server.exits_cleanly("stop");
}

/// Past its 64 clients the server turns newcomers away with an error line,
/// and serves the others as before.
#[test]
fn too_many_clients_are_turned_away() {
    let Some(mut server) = Server::start(&["--rate", RATE]) else {
        return;
    };
    let mut clients: Vec<Client> = (0..64).map(|_| server.connect()).collect();
    // Each answer proves its connection was accepted.
    for c in &mut clients {
        assert!(c.ask("stats").starts_with("stats "));
    }
    let mut one_too_many = server.connect();
    assert_eq!(one_too_many.line().as_deref(), Some("error: too many clients"));
    assert!(one_too_many.closed());
    assert_eq!(Counters::parse(&clients[0].ask("stats")).get("clients"), 64);
    // A place freed is a place taken.
    drop(clients.pop());
    let deadline = Instant::now() + REPLY;
    loop {
        // Turned away, it may find its request reset rather than answered.
        let mut c = server.connect();
        let mut reply = String::new();
        let _ = c.stream.write_all(b"stats\n");
        let _ = c.reader.read_line(&mut reply);
        if reply.starts_with("stats ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a client left: {reply:?}"
        );
        thread::sleep(ASK_EVERY);
    }
    assert!(clients[0].ask("stop").starts_with("stopping "));
    server.exits_cleanly("stop");
}

/// Starts the server, waits for traffic, sends `signal` and expects a clean
/// exit with a last counters line.
fn stops_on(signal: i32, name: &str) {
    let Some(mut server) = Server::start(&["--rate", RATE]) else {
        return;
    };
    let mut c = server.connect();
    c.counters_until("forwarding both ways", Counters::flowing);
    server.signal(signal);
    let out = server.exits_cleanly(name);
    let last = out.last().cloned().unwrap_or_default();
    assert!(last.starts_with(&format!("stopped by {name}: ")), "{out:?}");
    let counters = Counters::parse(&last);
    assert!(counters.flowing(), "{last}");
    assert_eq!(counters.get("gen_bad"), 0, "{last}");
    // The client still connected when it stopped sees the end of the stream.
    assert!(c.closed());
}

#[test]
fn sigterm_stops_it_with_a_last_counters_line() {
    stops_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_stops_it_with_a_last_counters_line() {
    stops_on(libc::SIGINT, "SIGINT");
}

/// Named ports are forwarded as they are, with no generator: here two
/// embedded pipes nobody drives, so the counters stay at zero.
#[test]
fn named_ports_are_served_without_a_generator() {
    let Some(mut server) = Server::start(&["--ports", "emu:named{1", "emu:named{2"]) else {
        return;
    };
    let mut c = server.connect();
    let counters = Counters::parse(&c.ask("stats"));
    assert_eq!(counters.get("ab_packets"), 0, "{counters:?}");
    assert_eq!(counters.get("ba_packets"), 0, "{counters:?}");
    assert!(
        !counters.pairs.contains_key("gen_sent"),
        "a generator on named ports: {counters:?}"
    );
    assert!(c.ask("stop").starts_with("stopping "));
    server.exits_cleanly("stop");
}

/// Arguments it cannot use: a usage message and status 2.
#[test]
fn bad_arguments_exit_2() {
    let Some(bin) = examples::binary("bad_arguments_exit_2", "mio_server") else {
        return;
    };
    for args in [
        &["--rate"][..],
        &["--listen", "nowhere"],
        &["only-one-port"],
        &["--ports", "emu:a{1", "emu:a{2", "--rate", "5"],
        &["--bogus"],
        &["--generate"],
    ] {
        let mut child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mio_server runs");
        let status = exit_within(&mut child, EXIT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{args:?}");
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(err.contains("usage: mio_server"), "{args:?}: {err}");
    }
}
