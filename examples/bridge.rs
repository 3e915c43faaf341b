//! Forwards packets both ways between two ports, like netmap's `bridge`,
//! and takes its arguments.
//!
//! ```text
//! bridge [-v] [-i PORT_A] [-i PORT_B] [-b BURST] [-w SECS] [-c] [-L] [PORT_A [PORT_B [BURST]]]
//!        [-T SECS] [--fallback] [--promisc] [--demo N]
//! cargo run --release --example bridge -- A B        # the same as -i A -i B
//! ```
//!
//! As in netmap's `bridge`, a port named once (or twice the same) is bridged
//! with its host stack (`A` and `A^`), or, with `-L`, to itself: what
//! arrives on it is sent back out of it. `-c` copies even where the ports
//! could swap buffers, and `-w` waits that many seconds for links to come
//! up before forwarding (default 0; the C tool waits 4).
//!
//! When the two ports share one memory region (two rings of one netmap
//! port, two pipe ends of one parent, two ports of one VALE memory), packets
//! move without a copy: [`TxRing::forward`] swaps buffer indices. Otherwise
//! (two NICs with their own memory, AF_PACKET ports) each packet is copied
//! once, and the bridge says so when it starts. One thread drives both
//! directions and sleeps in `mio` when neither has work; `-b` caps the
//! packets moved per ring per pass (default 1024). `-v` prints the rates
//! each second, and `-vv` also what each pass moved, ring by ring (netmap's
//! `bridge`, too, says more for each `-v`); the totals are printed at the
//! end (`-T` seconds, default: run until killed). Short flags combine and
//! take their values attached, as with getopt: `-cvb64`.
//!
//! `--demo N`, for two pipe ends (such as the embedded kernel's): the bridge
//! opens the other end of each pipe itself,
//! sends `N` numbered frames into the first, and stops when all of them
//! came out of the second, checking each:
//!
//! ```text
//! cargo run --release --example bridge -- -i emu:br{1 -i emu:br{2 --demo 1000000
//! ```

#[path = "common/cli.rs"]
mod cli;
#[path = "common/open.rs"]
mod common;
#[path = "common/value.rs"]
mod value;

use std::error::Error as StdError;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use netmap_rs::prelude::*;

const USAGE: &str = "\
usage: bridge [-v] [-i PORT_A] [-i PORT_B] [-b BURST] [-w SECS] [-c] [-L] [PORT_A [PORT_B [BURST]]]
              [-T SECS] [--fallback] [--promisc] [--demo N]
  -i PORT      a port to bridge (netmap names: eth0, netmap:eth0^, vale0:p1, emu:x{1, ...),
               at most twice
  PORT_A [PORT_B [BURST]]
               the ports (replacing those of -i) and the burst after the flags
  -b BURST     packets moved per ring per pass, 1 to 8192 (default 1024)
  -w SECS      wait for the links to come up before forwarding, 0 to 100 (default 0)
  -c           copy every packet, even between ports that could swap buffers
  -L           one port: send what arrives back out of it (without -L, one port is
               bridged with its host stack, PORT and PORT^)
  -v           print the rate of each direction every second; twice (-vv), also
               each pass that moved packets, ring by ring
  -T SECS      stop after SECS seconds (above 0, at most 1e9) and print the totals
               (default: run until killed)
  --fallback   use AF_XDP, then AF_PACKET, for real interfaces where netmap is
               unavailable
  --promisc    put AF_PACKET interfaces in promiscuous mode
  --demo N     for two pipe ends: drive the pipes' other ends with N numbered frames
               and stop when all came through in order
  -h, --help   this text";

struct Args {
    ports: Vec<String>,
    batch: usize,
    wait: u64,
    copy: bool,
    loopback: bool,
    secs: Option<f64>,
    fallback: bool,
    promisc: bool,
    /// How many times `-v` was given.
    verbose: u32,
    demo: Option<u64>,
}

/// A burst as `-b` and the third positional argument take it.
fn burst(what: &str, v: OsString) -> Result<usize, lexopt::Error> {
    value::checked(what, v, "a number from 1 to 8192", |b| (1..=8192).contains(b))
}

/// The arguments, or `None` for `--help`.
fn parse_args(p: &mut lexopt::Parser) -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        ports: Vec::new(),
        batch: 1024,
        wait: 0,
        copy: false,
        loopback: false,
        secs: None,
        fallback: false,
        promisc: false,
        verbose: 0,
        demo: None,
    };
    let mut positional = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Short('i') if a.ports.len() == 2 => return Err("-i: two ports are named already".into()),
            Short('i') => a.ports.push(p.value()?.string()?),
            Short('b') => a.batch = burst("-b", p.value()?)?,
            Short('w') => {
                a.wait = value::checked("-w", p.value()?, "a number of seconds from 0 to 100", |&w| {
                    w <= 100
                })?
            }
            Short('c') => a.copy = true,
            Short('L') => a.loopback = true,
            Short('T') => {
                a.secs = Some(value::checked(
                    "-T",
                    p.value()?,
                    "a number of seconds above 0, at most 1e9",
                    |&s: &f64| s > 0.0 && s <= 1e9,
                )?)
            }
            Long("fallback") => a.fallback = true,
            Long("promisc") => a.promisc = true,
            Short('v') => a.verbose += 1,
            Long("demo") => {
                a.demo = Some(value::checked(
                    "--demo",
                    p.value()?,
                    "a positive number of frames",
                    |&n| n > 0,
                )?)
            }
            Short('h') | Long("help") => return Ok(None),
            Value(v) => positional.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let mut positional = positional.into_iter();
    if let Some(p) = positional.next() {
        a.ports.truncate(0);
        a.ports.push(p);
    }
    if let Some(p) = positional.next() {
        a.ports.truncate(1);
        a.ports.push(p);
    }
    if let Some(b) = positional.next() {
        a.batch = burst("BURST", b.into())?;
    }
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument `{extra}`").into());
    }
    match a.ports.len() {
        0 => return Err("name a port".into()),
        1 => a.ports.push(a.ports[0].clone()),
        _ => {}
    }
    if a.ports[0] == a.ports[1] && !a.loopback {
        // netmap's bridge: one port is bridged with its host stack.
        a.ports[0].push('^');
    }
    Ok(Some(a))
}

/// What stops the bridge: a port's error, or the demo's own check.
type Failure = Box<dyn StdError>;

/// How packets go from one port to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Swap buffers (one memory region).
    ZeroCopy,
    /// Copy each packet.
    Copy,
}

/// One direction: every RX ring of the source into the TX ring of the same
/// index (modulo their count) of the destination.
struct Direction<'a> {
    rx: Vec<RxRing<'a>>,
    tx: Vec<TxRing<'a>>,
    how: How,
    packets: u64,
    bytes: u64,
    name: String,
}

impl<'a> Direction<'a> {
    fn new(from: &'a Netmap, to: &'a Netmap, how: How) -> Result<Self, Error> {
        let rx = (0..from.num_rx_rings())
            .map(|i| from.rx_ring(i))
            .collect::<Result<_, _>>()?;
        let tx = (0..to.num_tx_rings())
            .map(|i| to.tx_ring(i))
            .collect::<Result<_, _>>()?;
        Ok(Direction {
            rx,
            tx,
            how,
            packets: 0,
            bytes: 0,
            name: format!("{} -> {}", from.name(), to.name()),
        })
    }

    /// One pass: moves what is waiting, at most `batch` packets per RX ring;
    /// returns how many moved. `each_ring` prints what each ring moved.
    fn pump(&mut self, batch: usize, each_ring: bool) -> Result<u64, Error> {
        if self.tx.is_empty() {
            return Ok(0);
        }
        let mut moved = 0;
        let ntx = self.tx.len();
        for (i, rx) in self.rx.iter_mut().enumerate() {
            let tx = &mut self.tx[i % ntx];
            rx.sync()?;
            if rx.is_empty() {
                continue;
            }
            if tx.space() == 0 {
                tx.sync()?;
            }
            let mut n = 0;
            while n < batch && tx.space() > 0 {
                let Some(frame) = rx.recv() else { break };
                let len = frame.len() as u64;
                match self.how {
                    How::ZeroCopy => match tx.forward(frame) {
                        Ok(()) => {}
                        Err(Error::MemoryMismatch { a, b }) => {
                            // Not one region after all: that frame is gone;
                            // copy from now on.
                            eprintln!("bridge: {}: {a} and {b} differ; copying from now on", self.name);
                            self.how = How::Copy;
                            continue;
                        }
                        Err(e) => return Err(e),
                    },
                    How::Copy => tx.send(frame.payload())?,
                }
                n += 1;
                self.bytes += len;
            }
            if n > 0 {
                tx.sync()?;
                moved += n as u64;
                if each_ring {
                    println!(
                        "bridge: {}: {n} packets, RX ring {i} -> TX ring {}",
                        self.name,
                        i % ntx
                    );
                }
            }
        }
        self.packets += moved;
        Ok(moved)
    }
}

fn open(name: &str, a: &Args) -> Result<Netmap, Error> {
    let port = common::open(name, a.fallback, a.promisc)?;
    let why = common::fallback_note(&port);
    println!(
        "bridge: {} on {} backend, {} RX / {} TX rings{why}",
        port.name(),
        port.backend(),
        port.num_rx_rings(),
        port.num_tx_rings()
    );
    Ok(port)
}

/// The other end of a pipe name (`{` <-> `}`), if it is one.
fn peer_of(name: &str) -> Option<String> {
    let spec = netmap_rs::spec::parse(name).ok()?;
    let pipe = spec.pipe.as_ref()?;
    let (from, to) = match pipe.role {
        netmap_rs::spec::PipeRole::Master => ('{', '}'),
        netmap_rs::spec::PipeRole::Slave => ('}', '{'),
    };
    Some(name.replacen(from, &to.to_string(), 1))
}

/// `--demo`: a source and a sink on the pipes' other ends.
struct Demo {
    src: Netmap,
    sink: Netmap,
    total: u64,
    sent: u64,
    got: u64,
}

impl Demo {
    fn new(a: &Args, total: u64) -> Result<Self, Failure> {
        let (Some(src), Some(sink)) = (peer_of(&a.ports[0]), peer_of(&a.ports[1])) else {
            return Err("--demo needs two pipe ends, such as -i emu:br{1 -i emu:br{2".into());
        };
        if src == sink {
            return Err("--demo needs two different pipe ends, not one with -L".into());
        }
        Ok(Demo {
            src: NetmapBuilder::new(&src).build()?,
            sink: NetmapBuilder::new(&sink).build()?,
            total,
            sent: 0,
            got: 0,
        })
    }

    /// Sends what fits and checks what arrived; returns whether it is done.
    fn step(&mut self) -> Result<bool, Failure> {
        let mut tx = self.src.tx_ring(0)?;
        let mut frame = [0u8; 60];
        while self.sent < self.total && tx.space() > 0 {
            frame[..8].copy_from_slice(&self.sent.to_le_bytes());
            tx.send(&frame)?;
            self.sent += 1;
        }
        tx.sync()?;
        let mut rx = self.sink.rx_ring(0)?;
        rx.sync()?;
        while let Some(f) = rx.recv() {
            let seq = u64::from_le_bytes(f.payload()[..8].try_into().unwrap_or_default());
            if seq != self.got {
                return Err(format!("demo frame {} arrived as frame {seq}", self.got).into());
            }
            self.got += 1;
        }
        Ok(self.got == self.total)
    }
}

fn run(a: &Args) -> Result<(), Failure> {
    let pa = open(&a.ports[0], a)?;
    // -L: one port, bridged to itself.
    let pb = (a.ports[0] != a.ports[1])
        .then(|| open(&a.ports[1], a))
        .transpose()?;
    let pb_ref = pb.as_ref().unwrap_or(&pa);
    let mut demo = a.demo.map(|n| Demo::new(a, n)).transpose()?;
    // Ports share a region when backend and memory id agree; every AF_PACKET
    // port has memory of its own.
    let shared = pa.backend() == pb_ref.backend()
        && pa.mem_id() == pb_ref.mem_id()
        && pa.backend() != BackendKind::AfPacket;
    let how = if a.copy {
        println!("bridge: copying each packet (-c)");
        How::Copy
    } else if shared {
        println!(
            "bridge: zero-copy: both ports are in memory region {}",
            pa.mem_id()
        );
        How::ZeroCopy
    } else {
        println!(
            "bridge: the ports do not share memory ({} region {}, {} region {}): copying each packet",
            pa.backend(),
            pa.mem_id(),
            pb_ref.backend(),
            pb_ref.mem_id()
        );
        How::Copy
    };
    let mut ab = Direction::new(&pa, pb_ref, how)?;
    let mut ba = pb.as_ref().map(|pb| Direction::new(pb, &pa, how)).transpose()?;

    let mut poll = Poll::new()?;
    let interest = Interest::READABLE | Interest::WRITABLE;
    let fds = [Some(&pa), pb.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| p.as_raw_fd());
    for (token, fd) in fds.enumerate() {
        poll.registry()
            .register(&mut SourceFd(&fd), Token(token), interest)?;
    }
    if a.wait > 0 {
        println!("bridge: waiting {} s for the links to come up", a.wait);
        std::thread::sleep(Duration::from_secs(a.wait));
    }
    let mut events = Events::with_capacity(4);
    let start = Instant::now();
    let deadline = a.secs.map(|s| start + Duration::from_secs_f64(s));
    let (mut last, mut last_ab, mut last_ba) = (start, 0u64, 0u64);
    while deadline.is_none_or(|d| Instant::now() < d) {
        if let Some(d) = demo.as_mut() {
            if d.step()? {
                break;
            }
        }
        let each_ring = a.verbose > 1;
        let mut moved = ab.pump(a.batch, each_ring)?;
        if let Some(ba) = ba.as_mut() {
            moved += ba.pump(a.batch, each_ring)?;
        }
        if moved == 0 && demo.is_none() {
            // Readiness is edge-triggered: both directions are drained, so
            // the next edge is news. The timeout bounds any missed one.
            poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        }
        if a.verbose > 0 && last.elapsed() >= Duration::from_secs(1) {
            let s = last.elapsed().as_secs_f64();
            let ba_packets = ba.as_ref().map_or(0, |d| d.packets);
            print!(
                "bridge: {}: {:.0} pps",
                ab.name,
                (ab.packets - last_ab) as f64 / s
            );
            if let Some(ba) = &ba {
                print!(", {}: {:.0} pps", ba.name, (ba_packets - last_ba) as f64 / s);
            }
            println!();
            (last, last_ab, last_ba) = (Instant::now(), ab.packets, ba_packets);
        }
    }
    let s = start.elapsed().as_secs_f64();
    if let Some(d) = &demo {
        println!(
            "bridge: demo: {} frames sent, {} came through in order",
            d.sent, d.got
        );
        if d.got != d.total {
            return Err(format!("only {} of {} demo frames came through", d.got, d.total).into());
        }
    }
    for d in [Some(&ab), ba.as_ref()].into_iter().flatten() {
        println!(
            "bridge: {}: {} packets, {} bytes in {:.3} s ({:.0} pps)",
            d.name,
            d.packets,
            d.bytes,
            s,
            d.packets as f64 / s
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = match cli::parse("bridge", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
