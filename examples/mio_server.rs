//! A server on one `mio::Poll`: it forwards packets both ways between two
//! netmap ports and answers a line protocol on a TCP socket, from one thread.
//!
//! ```text
//! cargo run --release --example mio_server                          # two embedded pipes, with traffic
//! cargo run --release --example mio_server -- --rate 100000         # the traffic paced (packets/s each way)
//! cargo run --release --example mio_server -- --ports PORT_A PORT_B # forward between these ports
//! cargo run --release --example mio_server -- --generate emu:x{1 emu:y{1   # two regions: copies
//! cargo run --release --example mio_server -- --listen 127.0.0.1:7000
//! ```
//!
//! It prints `listening on ADDR` (by default 127.0.0.1 and a port the OS
//! picks) and serves until a client sends `stop`, or SIGINT (Ctrl-C) or
//! SIGTERM comes; then it prints a last line of counters and exits 0. Ask it
//! with netcat or bash alone:
//!
//! ```text
//! echo stats | nc -N 127.0.0.1 PORT
//! exec 3<>/dev/tcp/127.0.0.1/PORT; echo stats >&3; read -r line <&3; echo "$line"; exec 3<&-
//! ```
//!
//! The protocol is one line each way: `stats` gets the live counters as
//! `key=value` pairs (packets and bytes forwarded A to B and B to A, packets
//! dropped and copied, uptime, clients, and the traffic generator's own
//! counts); `stop` gets them one last time and stops the server; `help` and
//! `quit` do what they say. Anything else gets an `error: ...` line; a line
//! longer than 1024 bytes gets one and the connection is closed; so is a
//! client that lets more than 64 KiB of replies pile up unread. At most 64
//! clients are served at once.
//!
//! With no ports named it forwards between the master ends of two pipes of
//! the embedded kernel, `emu:mio_serverPID{1` (A) and `emu:mio_serverPID{2` (B),
//! so it runs on any Linux host; a generator thread drives the other ends
//! (`}1`, `}2`), sending numbered packets into both and checking that each
//! comes out of the other pipe in order. Named ports (`--ports A B`, or
//! just `A B`) are served as they are, with no generator, unless
//! `--generate` asks for one on their other ends; both must then be `emu:`
//! pipe ends, whose other ends the generator opens in this process.
//!
//! Forwarding tries zero-copy first ([`TxRing::forward`] trades the RX
//! slot's buffer for the TX slot's): that works when the ports share a memory
//! region, as two pipes of one parent do. When they do not, the first packet
//! gets [`Error::MemoryMismatch`], is copied instead, and so are all the
//! others of that direction (`copied` counts them). It forwards packet by
//! packet, to count each one's bytes; a forwarder that needs no byte counts
//! can move a whole ring's worth at once with [`TxRing::forward_from`].
//!
//! One `Poll` holds the two ports, the listener, every client and a
//! `Waker`; nothing busy-waits. The port handler follows the loop that mio's
//! edge-triggered readiness needs (see `netmap_rs::LocalPort`): sync each RX
//! ring first, forward what it holds, repeat until a sync finds nothing;
//! when the TX ring is full, stop and wait for the port to become writable.
//! So that a flood of packets cannot starve the clients, nor a flood of
//! requests the others, a direction yields after a few syncs and a client
//! after 64 KiB read, and the loop comes back to them after one non-blocking
//! poll. Signals are blocked in every thread and taken by a thread of their
//! own (`sigtimedwait`), which wakes the `Poll` with the `Waker`.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/signals.rs"]
mod signals;
#[path = "common/value.rs"]
mod value;

use std::cell::Cell;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use netmap_rs::prelude::*;
use netmap_rs::spec::{PipeRole, PortKind};

type BoxError = Box<dyn StdError + Send + Sync>;

const PORT_A: Token = Token(0);
const PORT_B: Token = Token(1);
const LISTENER: Token = Token(2);
/// The `Waker`: a signal came, or the generator ended.
const WAKE: Token = Token(3);
/// Client `i` has token `FIRST_CLIENT + i`.
const FIRST_CLIENT: usize = 4;
const MAX_CLIENTS: usize = 64;
/// The longest request line.
const MAX_LINE: usize = 1024;
/// Replies a client may leave unread before it is disconnected.
const MAX_OUT: usize = 64 * 1024;
/// Reads of 4 KiB one client gets per turn, so that one cannot hold the
/// loop.
const READ_TURN: usize = 16;
/// RX syncs that find packets one ring may do per turn before the loop
/// looks at its other events.
const TURN_SYNCS: usize = 8;
/// How long the last replies may take to leave once the server stops.
const LINGER: Duration = Duration::from_secs(1);
/// How often the signal thread looks whether the server stopped by itself.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);
/// Generator packets: Ethernet header, ethertype 0x88b5 (local
/// experimental), the direction, then the sequence number.
const PKT_LEN: usize = 60;
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

const USAGE: &str = "\
usage: mio_server [--listen ADDR] [--rate PPS] [[--generate] [--ports] PORT_A PORT_B]
  --listen ADDR    the TCP address to answer on (default 127.0.0.1:0, a port the OS picks)
  --ports PORT_A PORT_B, or PORT_A PORT_B
                   forward between these ports (netmap names: netmap:eth0, vale0:p1,
                   emu:x{1, ...; default: the master ends of two embedded pipes,
                   emu:mio_serverPID{1 and emu:mio_serverPID{2, PID this process's,
                   with the generator on their other ends)
  --generate       run the generator on the other ends of the named ports too (two
                   emu: pipe ends)
  --rate PPS       pace the generator to PPS packets per second each way (default 0:
                   as fast as they go)
  -h, --help       this text
A client's `stop` line, SIGINT or SIGTERM stops it.";

struct Args {
    listen: SocketAddr,
    /// `None`: the default pipes.
    ports: Option<[String; 2]>,
    /// Whether to run the generator: on the default pipes, or `--generate`.
    generate: bool,
    /// Generator packets per second each way; 0: as fast as they go.
    rate: u64,
}

/// The arguments, or `None` for `--help`.
fn parse_args(p: &mut lexopt::Parser) -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut names = Vec::new();
    let mut rate = None;
    let mut generate = false;
    while let Some(arg) = p.next()? {
        match arg {
            Long("listen") => {
                listen = value::checked(
                    "--listen",
                    p.value()?,
                    "an address such as 127.0.0.1:7000",
                    |_| true,
                )?
            }
            Long("rate") => {
                rate = Some(value::checked(
                    "--rate",
                    p.value()?,
                    "a number of packets per second (0: unpaced)",
                    |_: &u64| true,
                )?)
            }
            Long("ports") => {
                let two = p
                    .values()?
                    .take(2)
                    .map(|v| v.string())
                    .collect::<Result<Vec<_>, _>>()?;
                if two.len() < 2 {
                    return Err("--ports takes two port names".into());
                }
                names.extend(two);
            }
            Long("generate") => generate = true,
            Short('h') | Long("help") => return Ok(None),
            Value(port) => names.push(port.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let ports = match <[String; 2]>::try_from(names) {
        Ok(two) => Some(two),
        Err(none) if none.is_empty() => None,
        Err(_) => return Err("name two ports, or none".into()),
    };
    if ports.is_none() && generate {
        return Err("--generate takes two pipe ends (the default ports have the generator anyway)".into());
    }
    let generate = generate || ports.is_none();
    if !generate && rate.is_some() {
        return Err("--rate paces the generator, which named ports get only with --generate".into());
    }
    Ok(Some(Args {
        listen,
        ports,
        generate,
        rate: rate.unwrap_or(0),
    }))
}

fn main() -> ExitCode {
    let args = match cli::parse("mio_server", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // Block SIGINT and SIGTERM before any thread starts: every thread
    // inherits the mask, so only the signal thread's wait takes them.
    let signals = match signals::block_signals() {
        Ok(s) => s,
        Err(e) => return fail(&format!("blocking signals: {e}")),
    };
    match run(&args, signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(why: &str) -> ExitCode {
    eprintln!("mio_server: {why}");
    ExitCode::FAILURE
}

/// Why the server stopped.
enum Stop {
    Signal(i32),
    Client(SocketAddr),
    GeneratorEnded,
}

/// What the generator thread has done.
#[derive(Default)]
struct GenCounters {
    sent: AtomicU64,
    received: AtomicU64,
    /// Packets that came out wrong: not ours, the wrong direction, or out of
    /// order.
    bad: AtomicU64,
}

/// The generator thread and what stops it.
struct Generator {
    thread: JoinHandle<Result<(), BoxError>>,
    waker: Waker,
    stop: Arc<AtomicBool>,
    counters: Arc<GenCounters>,
}

fn run(args: &Args, signals: libc::sigset_t) -> Result<(), BoxError> {
    let [name_a, name_b] = args.ports.clone().unwrap_or_else(|| {
        // Named after this process, so that servers side by side do not meet.
        let pid = std::process::id();
        [
            format!("emu:mio_server{pid}{{1"),
            format!("emu:mio_server{pid}{{2"),
        ]
    });
    let mut poll = Poll::new()?;
    let a = NetmapBuilder::new(&name_a).build()?;
    let b = NetmapBuilder::new(&name_b).build()?;
    let interest = Interest::READABLE | Interest::WRITABLE;
    let a = a.register_local(&poll, PORT_A, interest)?;
    let b = b.register_local(&poll, PORT_B, interest)?;
    let mut ab = Direction::new(&a, &b)?;
    let mut ba = Direction::new(&b, &a)?;
    let mut listener = TcpListener::bind(args.listen)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);

    let caught = Arc::new(AtomicI32::new(0));
    let serving = Arc::new(AtomicBool::new(true));
    let sig_thread = {
        let (caught, waker, serving) = (Arc::clone(&caught), Arc::clone(&waker), Arc::clone(&serving));
        thread::spawn(move || {
            while serving.load(Relaxed) {
                if let Some(sig) = signals::wait_signal(&signals, SIGNAL_CHECK) {
                    caught.store(sig, Relaxed);
                    // A failed wake leaves nobody to tell.
                    let _ = waker.wake();
                    return;
                }
            }
        })
    };
    let generator = if args.generate {
        Some(start_generator(&a, &b, args.rate, &waker)?)
    } else {
        None
    };

    let rings = |p: &Netmap| {
        format!(
            "{} ({} RX, {} TX rings)",
            p.name(),
            p.num_rx_rings(),
            p.num_tx_rings()
        )
    };
    println!("forwarding {} <-> {}", rings(&a), rings(&b));
    if args.generate {
        let pace = match args.rate {
            0 => "as fast as they go".to_owned(),
            r => format!("{r} packets/s"),
        };
        println!("generator on the other ends of the pipes: {pace} each way");
    }
    println!("listening on {}", listener.local_addr()?);

    let start = Instant::now();
    let mut clients: Vec<Option<Client>> = (0..MAX_CLIENTS).map(|_| None).collect();
    // How many there are, kept by `accept` and `serve` (a client's reply
    // may be written while the loop is taking others in or out).
    let connected = Cell::new(0);
    let mut events = Events::with_capacity(256);
    // A direction that yielded with packets left, or a client with input
    // left (`Client::unread`): poll without waiting.
    let mut more = false;
    let why = loop {
        let busy = more || clients.iter().flatten().any(|c| c.unread);
        let timeout = busy.then_some(Duration::ZERO);
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        let mut ports_ready = more;
        let mut stop = None;
        let report = Report {
            start,
            ab: &ab,
            ba: &ba,
            clients: &connected,
            generator: generator.as_ref().map(|g| &*g.counters),
        };
        for event in events.iter() {
            match event.token() {
                PORT_A | PORT_B => ports_ready = true,
                LISTENER => accept(&listener, &poll, &mut clients, &connected),
                WAKE => {
                    let sig = caught.load(Relaxed);
                    if sig != 0 {
                        stop = Some(Stop::Signal(sig));
                    } else if generator.as_ref().is_some_and(|g| g.thread.is_finished()) {
                        stop = Some(Stop::GeneratorEnded);
                    }
                }
                Token(t) => {
                    if let Some(slot) = clients.get_mut(t - FIRST_CLIENT) {
                        stop = stop.or(serve(slot, &report));
                    }
                }
            }
        }
        // Clients that had more to read than one turn takes.
        for slot in &mut clients {
            if slot.as_ref().is_some_and(|c| c.unread) {
                stop = stop.or(serve(slot, &report));
            }
        }
        if let Some(why) = stop {
            break why;
        }
        if ports_ready {
            more = false;
            for d in [&mut ab, &mut ba] {
                more |= d.pump()? == Turn::Yielded;
            }
        }
    };

    // Stop the traffic, take the last counts, and close the ports, so that
    // only the clients are left in the Poll.
    let mut errors = Vec::new();
    if let Some(g) = &generator {
        g.stop.store(true, Relaxed);
        g.waker.wake()?;
    }
    let generator = generator.map(|g| {
        match g.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("generator: {e}")),
            Err(_) => errors.push("the generator thread panicked".to_owned()),
        }
        g.counters
    });
    let line = Report {
        start,
        ab: &ab,
        ba: &ba,
        clients: &connected,
        generator: generator.as_deref(),
    }
    .line();
    drop((ab, ba));
    drop(a.into_inner(&poll)?);
    drop(b.into_inner(&poll)?);

    // Let the last replies (the answer to `stop`) leave, for a bounded time.
    let deadline = Instant::now() + LINGER;
    loop {
        for slot in &mut clients {
            if slot.as_mut().is_some_and(|c| !c.flush_pending()) {
                *slot = None;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if clients.iter().all(Option::is_none) || left.is_zero() {
            break;
        }
        match poll.poll(&mut events, Some(left)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => r?,
        }
    }

    // The signal thread looks at `serving` between waits.
    serving.store(false, Relaxed);
    if sig_thread.join().is_err() {
        errors.push("the signal thread panicked".to_owned());
    }

    let how = match why {
        Stop::Signal(libc::SIGINT) => "SIGINT".to_owned(),
        Stop::Signal(libc::SIGTERM) => "SIGTERM".to_owned(),
        Stop::Signal(s) => format!("signal {s}"),
        Stop::Client(peer) => format!("client {peer}"),
        Stop::GeneratorEnded => "the generator ending".to_owned(),
    };
    println!("stopped by {how}: {line}");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; ").into())
    }
}

/// What a direction's turn ended with.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// Every RX ring drained (a sync found nothing, which re-arms
    /// readiness), or waiting for the TX ring to become writable.
    Done,
    /// Packets left after `TURN_SYNCS` syncs of one ring: call again.
    Yielded,
}

/// One direction: RX ring `i` of the source into TX ring `i` (modulo their
/// count) of the destination.
struct Direction<'a> {
    rx: Vec<RxRing<'a>>,
    tx: Vec<TxRing<'a>>,
    name: String,
    /// Set by the first [`Error::MemoryMismatch`]: copy from then on.
    copy: bool,
    packets: u64,
    bytes: u64,
    copied: u64,
    /// Packets that could not be sent (a multi-slot packet wider than the
    /// room left, a packet too large for the destination), and slots the
    /// rings skipped as corrupt.
    dropped: u64,
}

impl<'a> Direction<'a> {
    fn new(from: &'a Netmap, to: &'a Netmap) -> Result<Self, Error> {
        Ok(Direction {
            rx: (0..from.num_rx_rings())
                .map(|i| from.rx_ring(i))
                .collect::<Result<_, _>>()?,
            tx: (0..to.num_tx_rings())
                .map(|i| to.tx_ring(i))
                .collect::<Result<_, _>>()?,
            name: format!("{} -> {}", from.name(), to.name()),
            copy: false,
            packets: 0,
            bytes: 0,
            copied: 0,
            dropped: 0,
        })
    }

    /// One turn: for every RX ring, sync first, forward, repeat until a sync
    /// finds nothing, the TX ring stays full (its port's WRITABLE event calls
    /// us back), or the ring had `TURN_SYNCS` syncs with packets.
    fn pump(&mut self) -> Result<Turn, Error> {
        let ntx = self.tx.len();
        if ntx == 0 {
            return Ok(Turn::Done);
        }
        let mut turn = Turn::Done;
        for i in 0..self.rx.len() {
            let mut syncs = 0;
            while self.sync_rx(i)? > 0 {
                if syncs == TURN_SYNCS {
                    turn = Turn::Yielded;
                    break;
                }
                syncs += 1;
                self.forward(i, i % ntx)?;
                let tx = &mut self.tx[i % ntx];
                tx.sync()?; // hand them to the kernel before polling again
                if !self.rx[i].is_empty() && tx.space() == 0 {
                    break; // full: wait for WRITABLE
                }
            }
        }
        Ok(turn)
    }

    /// `RxRing::sync`, with slots skipped as corrupt (reported once, after
    /// the sync has happened) counted as dropped.
    fn sync_rx(&mut self, i: usize) -> Result<usize, Error> {
        let rx = &mut self.rx[i];
        match rx.sync() {
            Err(Error::RingCorrupt { .. }) => {
                self.dropped += 1;
                Ok(rx.pending())
            }
            r => r,
        }
    }

    /// Forwards what RX ring `r` holds, while TX ring `t` has room.
    fn forward(&mut self, r: usize, t: usize) -> Result<(), Error> {
        let (rx, tx) = (&mut self.rx[r], &mut self.tx[t]);
        loop {
            if tx.space() == 0 {
                tx.sync()?;
                if tx.space() == 0 {
                    return Ok(());
                }
            }
            let Some(frame) = rx.recv() else { return Ok(()) };
            // The payload borrows the RX ring, not the frame: it is still
            // there if `forward` refuses the frame.
            let data = frame.payload();
            if frame.slots() > tx.space() {
                tx.sync()?; // a multi-slot packet: make what room there is
            }
            let sent = if self.copy {
                tx.send(data)
            } else {
                match tx.forward(frame) {
                    Err(Error::MemoryMismatch { a, b }) => {
                        eprintln!(
                            "mio_server: {}: {a} and {b} differ; copying from now on",
                            self.name
                        );
                        self.copy = true;
                        tx.send(data)
                    }
                    r => r,
                }
            };
            match sent {
                Ok(()) => {
                    self.packets += 1;
                    self.bytes += data.len() as u64;
                    self.copied += u64::from(self.copy);
                }
                Err(Error::RingFull { .. } | Error::PacketTooLarge { .. } | Error::RingCorrupt { .. }) => {
                    self.dropped += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn mode(&self) -> &'static str {
        if self.copy {
            "copy"
        } else {
            "zero-copy"
        }
    }
}

/// What `stats` reports.
struct Report<'r, 'a> {
    start: Instant,
    ab: &'r Direction<'a>,
    ba: &'r Direction<'a>,
    clients: &'r Cell<usize>,
    generator: Option<&'r GenCounters>,
}

impl Report<'_, '_> {
    /// The counters as `key=value` pairs.
    fn line(&self) -> String {
        let (ab, ba) = (self.ab, self.ba);
        let mut line = format!(
            "uptime_s={:.3} ab_packets={} ab_bytes={} ba_packets={} ba_bytes={} dropped={} copied={} \
             ab_mode={} ba_mode={} clients={}",
            self.start.elapsed().as_secs_f64(),
            ab.packets,
            ab.bytes,
            ba.packets,
            ba.bytes,
            ab.dropped + ba.dropped,
            ab.copied + ba.copied,
            ab.mode(),
            ba.mode(),
            self.clients.get()
        );
        if let Some(g) = self.generator {
            let _ = write!(
                line,
                " gen_sent={} gen_received={} gen_bad={}",
                g.sent.load(Relaxed),
                g.received.load(Relaxed),
                g.bad.load(Relaxed)
            );
        }
        line
    }
}

/// Accepts every waiting connection (readiness is edge-triggered).
fn accept(listener: &TcpListener, poll: &Poll, clients: &mut [Option<Client>], connected: &Cell<usize>) {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors, say: the connection waits in the
                // backlog until the next one comes.
                eprintln!("mio_server: accept: {e}");
                return;
            }
        };
        let Some(i) = clients.iter().position(Option::is_none) else {
            // Best effort: a fresh socket has room for one line.
            let _ = stream.write(b"error: too many clients\n");
            continue;
        };
        let token = Token(FIRST_CLIENT + i);
        match poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            Ok(()) => {
                clients[i] = Some(Client::new(stream, peer));
                connected.set(connected.get() + 1);
            }
            Err(e) => eprintln!("mio_server: registering {peer}: {e}"),
        }
    }
}

/// Serves the client in `slot` (after an event, or a turn that left input
/// unread), and closes it when it is done; returns `Stop` if it asked.
fn serve(slot: &mut Option<Client>, report: &Report<'_, '_>) -> Option<Stop> {
    let client = slot.as_mut()?;
    let stop = client.serve(report).then_some(Stop::Client(client.peer));
    if !client.keep() {
        // Dropping the stream closes it, which takes it out of the Poll.
        *slot = None;
        report.clients.set(report.clients.get() - 1);
    }
    stop
}

/// One TCP client: what it sent that is not a whole line yet, and the
/// replies it has not taken yet.
struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Done reading (end of stream, `quit`, a line too long): close once
    /// the output is sent.
    closing: bool,
    /// The socket failed, or the client let too much output pile up.
    dead: bool,
    /// The last turn ended before the socket had nothing more to read.
    unread: bool,
}

impl Client {
    fn new(stream: TcpStream, peer: SocketAddr) -> Self {
        Client {
            stream,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            closing: false,
            dead: false,
            unread: false,
        }
    }

    /// One turn: reads what there is (edge-triggered: until the socket has
    /// nothing more, or for at most `READ_TURN` reads, setting `unread`),
    /// answers each whole line, and sends what it can. Returns whether the
    /// client asked the server to stop.
    fn serve(&mut self, report: &Report<'_, '_>) -> bool {
        let mut stop = false;
        let mut buf = [0u8; 4096];
        let mut reads = 0;
        self.unread = false;
        while !self.closing && !self.dead && !stop {
            if reads == READ_TURN {
                self.unread = true;
                break;
            }
            reads += 1;
            match self.stream.read(&mut buf) {
                Ok(0) => self.closing = true,
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    stop = self.answer(report);
                    self.flush();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
        self.flush();
        stop
    }

    /// Answers every whole line of the input; returns whether one was `stop`.
    fn answer(&mut self, report: &Report<'_, '_>) -> bool {
        while let Some(end) = self.input.iter().position(|&b| b == b'\n') {
            if end > MAX_LINE {
                break;
            }
            let line: Vec<u8> = self.input.drain(..=end).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match line {
                b"" => {}
                b"stats" => self.reply(&format!("stats {}", report.line())),
                b"stop" => {
                    self.reply(&format!("stopping {}", report.line()));
                    self.closing = true;
                    return true;
                }
                b"help" => self.reply("commands: stats, stop, help, quit"),
                b"quit" => {
                    self.reply("bye");
                    self.closing = true;
                    return false;
                }
                other => {
                    let shown: String = other
                        .iter()
                        .take(32)
                        .flat_map(|b| b.escape_ascii())
                        .map(char::from)
                        .collect();
                    self.reply(&format!(
                        "error: unknown command \"{shown}\" (commands: stats, stop, help, quit)"
                    ));
                }
            }
        }
        if self.input.len() > MAX_LINE {
            self.reply(&format!("error: line longer than {MAX_LINE} bytes; closing"));
            self.input.clear();
            self.closing = true;
        }
        false
    }

    fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.push(b'\n');
        if self.output.len() > MAX_OUT {
            self.dead = true;
        }
    }

    /// Sends what the socket takes now.
    fn flush(&mut self) {
        while !self.dead && !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => self.dead = true,
                Ok(n) => drop(self.output.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
    }

    /// Whether to keep the connection after an event.
    fn keep(&self) -> bool {
        !(self.dead || (self.closing && self.output.is_empty()))
    }

    /// Sends what it can; returns whether output is still waiting (and the
    /// socket still works).
    fn flush_pending(&mut self) -> bool {
        self.flush();
        !self.dead && !self.output.is_empty()
    }
}

/// The other end of `port`, if it is a pipe end of the embedded kernel.
fn peer_of(port: &Netmap) -> Option<String> {
    let spec = port.spec();
    let pipe = spec.pipe.as_ref().filter(|_| spec.kind == PortKind::Emu)?;
    let (from, to) = match pipe.role {
        PipeRole::Master => ('{', "}"),
        PipeRole::Slave => ('}', "{"),
    };
    Some(spec.text.replacen(from, to, 1))
}

/// Opens the other ends of pipe ends `a` and `b` and starts the generator
/// on them, with its own `Poll`; it wakes `server` when it ends.
fn start_generator(a: &Netmap, b: &Netmap, rate: u64, server: &Arc<Waker>) -> Result<Generator, BoxError> {
    let (Some(peer_a), Some(peer_b)) = (peer_of(a), peer_of(b)) else {
        return Err(format!(
            "the generator needs two pipe ends of the embedded kernel (such as emu:x{{1), not {} and {}",
            a.name(),
            b.name()
        )
        .into());
    };
    let peer_a = NetmapBuilder::new(&peer_a).build()?;
    let peer_b = NetmapBuilder::new(&peer_b).build()?;
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKE)?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(GenCounters::default());
    let thread = {
        let (stop, counters, server) = (Arc::clone(&stop), Arc::clone(&counters), Arc::clone(server));
        thread::spawn(move || {
            let r = generate(poll, peer_a, peer_b, rate, &counters, &stop);
            // A failed wake leaves nobody to tell.
            let _ = server.wake();
            r
        })
    };
    Ok(Generator {
        thread,
        waker,
        stop,
        counters,
    })
}

/// One way through the server: sent into one pipe, expected out of the other.
struct Lane<'a> {
    tx: TxRing<'a>,
    rx: RxRing<'a>,
    tag: u8,
    sent: u64,
    next: u64,
}

/// The generator: sends numbered packets into both pipes (at `rate`
/// packets/s each way, or as fast as the server takes them if 0) and checks
/// what comes out of the other, until `stop`.
fn generate(
    mut poll: Poll,
    peer_a: Netmap,
    peer_b: Netmap,
    rate: u64,
    c: &GenCounters,
    stop: &AtomicBool,
) -> Result<(), BoxError> {
    let interest = Interest::READABLE | Interest::WRITABLE;
    let pa = peer_a.register_local(&poll, PORT_A, interest)?;
    let pb = peer_b.register_local(&poll, PORT_B, interest)?;
    let mut lanes = [
        Lane {
            tx: pa.tx_ring(0)?,
            rx: pb.rx_ring(0)?,
            tag: b'>',
            sent: 0,
            next: 0,
        },
        Lane {
            tx: pb.tx_ring(0)?,
            rx: pa.rx_ring(0)?,
            tag: b'<',
            sent: 0,
            next: 0,
        },
    ];
    let mut pkt = [0u8; PKT_LEN];
    pkt[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    pkt[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    pkt[12..14].copy_from_slice(&ETHERTYPE);
    // Paced, it sends in steps of 10 ms worth (each step wakes both threads),
    // but of at most half a ring: a step that fills the ring would have it
    // trade a few slots at a time with the server, a wake-up each.
    let half_ring = lanes
        .iter()
        .map(|l| l.tx.num_slots() as u64 / 2)
        .min()
        .unwrap_or(1);
    let step = (rate / 100).clamp(1, half_ring.max(1));
    let start = Instant::now();
    let mut events = Events::with_capacity(8);
    while !stop.load(Relaxed) {
        // Due in whole steps: a wake-up for another reason (the server's
        // packets coming back) must not send the few that became due since
        // the last one, or the two threads trade a packet or two per wake-up.
        let due = match rate {
            0 => u64::MAX,
            r => {
                let due = (u128::from(r) * start.elapsed().as_nanos() / 1_000_000_000) as u64;
                due - due % step
            }
        };
        // Whether a lane can send more now, and the earliest time a lane
        // that is not waiting for room has a step due.
        let (mut room, mut wake_at) = (false, None::<Instant>);
        for lane in &mut lanes {
            let before = lane.sent;
            while lane.sent < due && lane.tx.space() > 0 {
                pkt[14] = lane.tag;
                pkt[15..23].copy_from_slice(&lane.sent.to_le_bytes());
                lane.tx.send(&pkt)?;
                lane.sent += 1;
            }
            lane.tx.sync()?;
            c.sent.fetch_add(lane.sent - before, Relaxed);
            if lane.sent < due {
                // Full at the sync: WRITABLE comes when there is room.
                room |= lane.tx.space() > 0;
            } else if rate > 0 {
                let ns = u128::from(lane.sent + step) * 1_000_000_000 / u128::from(rate);
                let at = start + Duration::from_nanos(ns as u64);
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
        }
        for lane in &mut lanes {
            let (mut got, mut bad) = (0, 0);
            while lane.rx.sync()? > 0 {
                for f in lane.rx.iter() {
                    let seq = f
                        .get(15..23)
                        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or_default()));
                    if f.len() == PKT_LEN && f[14] == lane.tag && seq == Some(lane.next) {
                        got += 1;
                    } else {
                        bad += 1;
                    }
                    lane.next = seq.map_or(lane.next, |s| s.wrapping_add(1));
                }
            }
            c.received.fetch_add(got, Relaxed);
            c.bad.fetch_add(bad, Relaxed);
        }
        if room {
            continue; // more to send now: no wait
        }
        let timeout = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => r?,
        }
    }
    drop(lanes);
    drop(pa.into_inner(&poll)?);
    drop(pb.into_inner(&poll)?);
    Ok(())
}
