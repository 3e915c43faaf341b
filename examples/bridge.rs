//! Forwards packets both ways between two ports, like netmap's `bridge`.
//!
//! ```text
//! bridge -i PORT_A -i PORT_B [-b BATCH] [-T SECS] [--fallback] [--promisc] [-v]
//! ```
//!
//! When the two ports share one memory region (two rings of one netmap
//! port, two pipe ends of one parent, two ports of one VALE memory), packets
//! move without a copy: [`TxRing::forward`] swaps buffer indices. Otherwise
//! (two NICs with their own memory, AF_PACKET ports) each packet is copied
//! once, and the bridge says so when it starts. One thread drives both
//! directions and sleeps in `mio` when neither has work; `-b` caps the
//! packets moved per ring per pass (default 512). `-v` prints the rates
//! each second; the totals are printed at the end (`-T` seconds, default:
//! run until killed).
//!
//! `--demo N`, for two pipe ends (such as the embedded kernel's, which live
//! in one process): the bridge opens the other end of each pipe itself,
//! sends `N` numbered frames into the first, and stops when all of them
//! came out of the second, checking each:
//!
//! ```text
//! cargo run --release --example bridge -- -i emu:br{1 -i emu:br{2 --demo 1000000
//! ```

#[path = "common/open.rs"]
mod common;

use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use netmap_rs::prelude::*;

const USAGE: &str =
    "usage: bridge -i PORT_A -i PORT_B [-b BATCH] [-T SECS] [--fallback] [--promisc] [-v] [--demo N]";

struct Args {
    ports: Vec<String>,
    batch: usize,
    secs: Option<f64>,
    fallback: bool,
    promisc: bool,
    verbose: bool,
    demo: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        ports: Vec::new(),
        batch: 512,
        secs: None,
        fallback: false,
        promisc: false,
        verbose: false,
        demo: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-i" => a.ports.push(it.next().ok_or("-i needs a port name")?),
            "-b" => {
                a.batch = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&b| b > 0)
                    .ok_or("-b takes a positive number")?
            }
            "-T" => {
                a.secs = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&s: &f64| s > 0.0)
                        .ok_or("-T takes a positive number of seconds")?,
                )
            }
            "--fallback" => a.fallback = true,
            "--promisc" => a.promisc = true,
            "-v" => a.verbose = true,
            "--demo" => {
                a.demo = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--demo takes a positive number of frames")?,
                )
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.ports.len() != 2 {
        return Err("name two ports with -i".into());
    }
    Ok(a)
}

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
    /// returns how many moved.
    fn pump(&mut self, batch: usize) -> Result<u64, Error> {
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
    fn new(a: &Args, total: u64) -> Result<Self, Error> {
        let (Some(src), Some(sink)) = (peer_of(&a.ports[0]), peer_of(&a.ports[1])) else {
            return Err(Error::Unsupported {
                backend: BackendKind::Emulated,
                what: "--demo with ports that are not pipe ends".into(),
                hint: "name two pipe ends, such as -i emu:br{1 -i emu:br{2".into(),
            });
        };
        Ok(Demo {
            src: NetmapBuilder::new(&src).build()?,
            sink: NetmapBuilder::new(&sink).build()?,
            total,
            sent: 0,
            got: 0,
        })
    }

    /// Sends what fits and checks what arrived; returns whether it is done.
    fn step(&mut self) -> Result<bool, Error> {
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
                return Err(Error::RingCorrupt {
                    ring: rx.id(),
                    what: format!("demo frame {} arrived as {seq}", self.got),
                });
            }
            self.got += 1;
        }
        Ok(self.got == self.total)
    }
}

fn run(a: &Args) -> Result<(), Error> {
    let pa = open(&a.ports[0], a)?;
    let pb = open(&a.ports[1], a)?;
    let mut demo = a.demo.map(|n| Demo::new(a, n)).transpose()?;
    // Ports share a region when backend and memory id agree; every AF_PACKET
    // port has memory of its own.
    let shared =
        pa.backend() == pb.backend() && pa.mem_id() == pb.mem_id() && pa.backend() != BackendKind::AfPacket;
    let how = if shared {
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
            pb.backend(),
            pb.mem_id()
        );
        How::Copy
    };
    let mut ab = Direction::new(&pa, &pb, how)?;
    let mut ba = Direction::new(&pb, &pa, how)?;

    let mut poll = Poll::new().map_err(|e| Error::Io {
        op: "creating a mio Poll".into(),
        source: e,
    })?;
    let interest = Interest::READABLE | Interest::WRITABLE;
    for (fd, token) in [(pa.as_raw_fd(), Token(0)), (pb.as_raw_fd(), Token(1))] {
        poll.registry()
            .register(&mut SourceFd(&fd), token, interest)
            .map_err(|e| Error::Io {
                op: "registering a port with mio".into(),
                source: e,
            })?;
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
        let moved = ab.pump(a.batch)? + ba.pump(a.batch)?;
        if moved == 0 && demo.is_none() {
            // Readiness is edge-triggered: both directions are drained, so
            // the next edge is news. The timeout bounds any missed one.
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .map_err(|e| Error::Io {
                    op: "mio poll".into(),
                    source: e,
                })?;
        }
        if a.verbose && last.elapsed() >= Duration::from_secs(1) {
            let s = last.elapsed().as_secs_f64();
            println!(
                "bridge: {}: {:.0} pps, {}: {:.0} pps",
                ab.name,
                (ab.packets - last_ab) as f64 / s,
                ba.name,
                (ba.packets - last_ba) as f64 / s
            );
            (last, last_ab, last_ba) = (Instant::now(), ab.packets, ba.packets);
        }
    }
    let s = start.elapsed().as_secs_f64();
    if let Some(d) = &demo {
        println!(
            "bridge: demo: {} frames sent, {} came through in order",
            d.sent, d.got
        );
        if d.got != d.total {
            return Err(Error::RingCorrupt {
                ring: 0,
                what: format!("only {} of {} demo frames came through", d.got, d.total),
            });
        }
    }
    for d in [&ab, &ba] {
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
    let a = match parse_args() {
        Ok(a) => a,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("bridge: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
