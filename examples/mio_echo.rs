//! An echo server on mio: one `Poll` serves several ports and sends every
//! packet back out of the port it came in on.
//!
//! ```text
//! cargo run --release --example mio_echo                   # two embedded pipes, with clients
//! cargo run --release --example mio_echo -- PORT...        # serve these ports (netmap:eth0, vale0:p1, ...)
//! cargo run --release --example mio_echo -- --threads      # one port per ring, one thread and Poll each
//! ```
//!
//! With no ports named it serves the master ends of two pipes of the
//! embedded kernel, `emu:mio_echoPID{1` and `emu:mio_echoPID{2` (two ring pairs
//! each), so it runs on any Linux host; a client thread drives the other ends
//! (`}1`, `}2`), sending numbered packets and checking that each comes back in
//! order. Named ports are served as they are, with no client. A line of
//! counters is printed every second. Ctrl-C (SIGINT) or SIGTERM stops it
//! cleanly: the main thread takes the signal, wakes every serving `Poll`
//! with its `mio::Waker`, and joins the threads, which deregister their ports.
//!
//! The handler follows the loop that mio's edge-triggered readiness needs
//! (see `netmap_rs::LocalPort`): after an event, sync each RX ring first, echo
//! what it holds, and repeat until a sync finds nothing. When the TX ring is
//! full it stops early and waits for the port to become writable.
//!
//! `--threads` shows the multi-threaded shape: each port is opened once per
//! ring (`build_per_ring`), and each of those ports gets a thread with its own
//! `Poll`, because the thread that polls a netmap port must be the thread that
//! drives its rings.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/signals.rs"]
mod signals;

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use netmap_rs::prelude::*;
use netmap_rs::LocalPort;
use signals::{block_signals, wait_signal};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The token of each serving thread's `Waker`.
const WAKE: Token = Token(usize::MAX);
/// Ring pairs of each default pipe.
const DEFAULT_RINGS: usize = 2;
/// Packets each client ring keeps in flight.
const WINDOW: u64 = 256;
/// Client packets: Ethernet header, ethertype 0x88b5 (local experimental),
/// then the sequence number and the ring.
const PKT_LEN: usize = 60;
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// What one served port has done.
#[derive(Default)]
struct Counters {
    echoed: AtomicU64,
    dropped: AtomicU64,
}

/// What the client threads have seen.
#[derive(Default)]
struct ClientCounters {
    sent: AtomicU64,
    back: AtomicU64,
    bad: AtomicU64,
}

const USAGE: &str = "\
usage: mio_echo [--threads] [PORT...]
  PORT...      the ports to serve, in netmap's names: netmap:eth0, vale0:p1, emu:x{1, ...
               (default: the master ends of two embedded pipes, emu:mio_echoPID{1 and
               emu:mio_echoPID{2, PID this process's, with a client thread on their
               other ends)
  --threads    open each port once per ring, and serve each with a thread and Poll of its own
  -h, --help   this text
Ctrl-C (SIGINT) or SIGTERM stops it.";

struct Args {
    names: Vec<String>,
    threads: bool,
}

/// The arguments, or `None` for `--help`.
fn parse_args(p: &mut lexopt::Parser) -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        names: Vec::new(),
        threads: false,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("threads") => a.threads = true,
            Short('h') | Long("help") => return Ok(None),
            Value(port) => a.names.push(port.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match cli::parse("mio_echo", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // Block SIGINT and SIGTERM before any thread starts: every thread
    // inherits the mask, so only the main thread's `sigtimedwait` takes them.
    let signals = match block_signals() {
        Ok(s) => s,
        Err(e) => return fail(&format!("blocking signals: {e}")),
    };
    match run(args.names, args.threads, &signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(why: &str) -> ExitCode {
    eprintln!("mio_echo: {why}");
    ExitCode::FAILURE
}

fn run(names: Vec<String>, threads: bool, signals: &libc::sigset_t) -> Result<(), BoxError> {
    let emulated = names.is_empty();
    let names = if emulated {
        // Named after this process, so that runs side by side do not meet.
        let pid = std::process::id();
        vec![format!("emu:mio_echo{pid}{{1"), format!("emu:mio_echo{pid}{{2")]
    } else {
        names
    };
    let open = |name: &str| {
        let b = NetmapBuilder::new(name);
        if emulated {
            b.num_tx_rings(DEFAULT_RINGS).num_rx_rings(DEFAULT_RINGS)
        } else {
            b
        }
    };

    // Which ports each serving thread gets: all of them to one thread, or
    // (--threads) one port per ring, one thread each.
    let mut groups: Vec<Vec<(usize, Netmap)>> = Vec::new();
    if threads {
        for (i, name) in names.iter().enumerate() {
            for port in open(name).build_per_ring()? {
                groups.push(vec![(i, port)]);
            }
        }
    } else {
        let ports = names
            .iter()
            .enumerate()
            .map(|(i, name)| Ok((i, open(name).build()?)))
            .collect::<Result<Vec<_>, Error>>()?;
        groups.push(ports);
    }
    for (i, name) in names.iter().enumerate() {
        let bound: Vec<String> = groups
            .iter()
            .flatten()
            .filter(|(s, _)| *s == i)
            .map(|(_, p)| format!("{:?}", p.rx_ring_ids()))
            .collect();
        println!("serving {name} (RX rings {})", bound.join(", "));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let counters: Arc<[Counters]> = names.iter().map(|_| Counters::default()).collect();
    let mut wakers = Vec::new();
    let mut servers = Vec::new();
    for group in groups {
        let poll = Poll::new()?;
        wakers.push(Waker::new(poll.registry(), WAKE)?);
        let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
        servers.push(thread::spawn(move || serve(poll, group, &counters, &stop)));
    }
    println!("{} serving thread(s); Ctrl-C stops", servers.len());

    // The other ends of the default pipes, driven by a client thread.
    let client_counters = Arc::new(ClientCounters::default());
    let client = if emulated {
        let ports = names
            .iter()
            .map(|n| NetmapBuilder::new(&n.replace('{', "}")).build())
            .collect::<Result<Vec<_>, Error>>()?;
        let (stop, c) = (Arc::clone(&stop), Arc::clone(&client_counters));
        Some(thread::spawn(move || client(ports, &c, &stop)))
    } else {
        None
    };

    // A counter line each second until a signal comes, or a thread fails.
    let start = Instant::now();
    let mut last: Vec<u64> = vec![0; names.len()];
    let mut next_tick = start + Duration::from_secs(1);
    let signal = loop {
        let left = next_tick.saturating_duration_since(Instant::now());
        if let Some(sig) = wait_signal(signals, left) {
            break Some(sig);
        }
        if Instant::now() < next_tick {
            continue;
        }
        next_tick += Duration::from_secs(1);
        let mut line = format!("{:>4}s", start.elapsed().as_secs());
        for (i, name) in names.iter().enumerate() {
            let now = counters[i].echoed.load(Relaxed);
            let dropped = counters[i].dropped.load(Relaxed);
            let rate = (now - last[i]) as f64 / 1e3;
            last[i] = now;
            let _ = write!(line, "  {name}: {now} echoed ({rate:.1} kpps), {dropped} dropped");
        }
        if emulated {
            let c = &client_counters;
            let (sent, back, bad) = (c.sent.load(Relaxed), c.back.load(Relaxed), c.bad.load(Relaxed));
            let _ = write!(line, "  | client: {sent} sent, {back} back, {bad} bad");
        }
        println!("{line}");
        let finished =
            servers.iter().any(|s| s.is_finished()) || client.as_ref().is_some_and(|c| c.is_finished());
        if finished {
            break None;
        }
    };

    // Shut down: raise the flag, wake every Poll, join.
    stop.store(true, Relaxed);
    for w in &wakers {
        w.wake()?;
    }
    let mut errors = Vec::new();
    for s in servers {
        match s.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("server: {e}")),
            Err(_) => errors.push("a server thread panicked".to_owned()),
        }
    }
    if let Some(c) = client {
        match c.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("client: {e}")),
            Err(_) => errors.push("the client thread panicked".to_owned()),
        }
    }
    let how = match signal {
        Some(libc::SIGINT) => "SIGINT".to_owned(),
        Some(libc::SIGTERM) => "SIGTERM".to_owned(),
        Some(s) => format!("signal {s}"),
        None => "a thread ending".to_owned(),
    };
    let total: u64 = counters.iter().map(|c| c.echoed.load(Relaxed)).sum();
    println!(
        "stopped by {how} after {:.1} s: {total} packets echoed",
        start.elapsed().as_secs_f64()
    );
    if emulated && client_counters.bad.load(Relaxed) > 0 {
        errors.push(format!(
            "the client saw {} wrong echoes",
            client_counters.bad.load(Relaxed)
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; ").into())
    }
}

/// One serving thread: registers its ports with its own `Poll` and echoes
/// until `stop` is raised (and its `Waker` fires).
fn serve(
    mut poll: Poll,
    ports: Vec<(usize, Netmap)>,
    counters: &[Counters],
    stop: &AtomicBool,
) -> Result<(), BoxError> {
    let ports = ports
        .into_iter()
        .enumerate()
        .map(|(token, (served, port))| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            Ok((served, port.register_local(&poll, Token(token), interest)?))
        })
        .collect::<io::Result<Vec<(usize, LocalPort)>>>()?;
    // Ring handles for the whole loop: RX ring i is echoed on TX ring i.
    let mut rings = ports
        .iter()
        .map(|(_, p)| {
            (0..p.num_rx_rings().min(p.num_tx_rings()))
                .map(|i| Ok((p.rx_ring(i)?, p.tx_ring(i)?)))
                .collect::<Result<Vec<_>, Error>>()
        })
        .collect::<Result<Vec<_>, Error>>()?;

    let mut events = Events::with_capacity(64);
    while !stop.load(Relaxed) {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            let Some(rings) = rings.get_mut(event.token().0) else {
                continue; // the Waker: the loop condition looks at `stop`
            };
            let c = &counters[ports[event.token().0].0];
            for (rx, tx) in rings {
                echo(rx, tx, c)?;
            }
        }
    }
    drop(rings);
    for (_, port) in ports {
        drop(port.into_inner(&poll)?);
    }
    Ok(())
}

/// Echoes what `rx` holds out of `tx`: sync first, echo, repeat until a sync
/// finds nothing (which re-arms readability). If `tx` stays full, stop with
/// packets left: the port's writable event calls us back.
fn echo(rx: &mut RxRing<'_>, tx: &mut TxRing<'_>, c: &Counters) -> Result<(), Error> {
    while rx.sync()? > 0 {
        let (mut echoed, mut dropped) = (0, 0);
        loop {
            if tx.space() == 0 {
                tx.sync()?;
                if tx.space() == 0 {
                    break;
                }
            }
            let Some(frame) = rx.recv() else { break };
            match tx.send(&frame) {
                Ok(()) => echoed += 1,
                Err(Error::RingFull { .. }) => {
                    // A multi-slot packet wider than the room left.
                    tx.sync()?;
                    match tx.send(&frame) {
                        Ok(()) => echoed += 1,
                        Err(_) => dropped += 1,
                    }
                }
                Err(_) => dropped += 1,
            }
        }
        tx.sync()?; // hand the echoes to the kernel before polling again
        c.echoed.fetch_add(echoed, Relaxed);
        c.dropped.fetch_add(dropped, Relaxed);
        if !rx.is_empty() && tx.space() == 0 {
            break; // full: wait for WRITABLE
        }
    }
    Ok(())
}

/// Drives the other ends of the default pipes: keeps `WINDOW` numbered
/// packets in flight on every ring and checks that each comes back in order.
fn client(ports: Vec<Netmap>, c: &ClientCounters, stop: &AtomicBool) -> Result<(), BoxError> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(8);
    let ports = ports
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.register_local(&poll, Token(i), Interest::READABLE))
        .collect::<io::Result<Vec<LocalPort>>>()?;
    struct Lane<'a> {
        tx: TxRing<'a>,
        rx: RxRing<'a>,
        sent: u64,
        back: u64,
    }
    let mut lanes = Vec::new();
    for p in &ports {
        for i in 0..p.num_tx_rings().min(p.num_rx_rings()) {
            lanes.push(Lane {
                tx: p.tx_ring(i)?,
                rx: p.rx_ring(i)?,
                sent: 0,
                back: 0,
            });
        }
    }
    let mut pkt = [0u8; PKT_LEN];
    pkt[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    pkt[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    pkt[12..14].copy_from_slice(&ETHERTYPE);
    while !stop.load(Relaxed) {
        for (l, lane) in lanes.iter_mut().enumerate() {
            let before = lane.sent;
            while lane.sent - lane.back < WINDOW && lane.tx.space() > 0 {
                pkt[14..22].copy_from_slice(&lane.sent.to_le_bytes());
                pkt[22..24].copy_from_slice(&(l as u16).to_le_bytes());
                lane.tx.send(&pkt)?;
                lane.sent += 1;
            }
            lane.tx.sync()?;
            c.sent.fetch_add(lane.sent - before, Relaxed);
        }
        // Wake up at least every 100 ms to look at `stop`.
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for (l, lane) in lanes.iter_mut().enumerate() {
            let (mut back, mut bad) = (0, 0);
            while lane.rx.sync()? > 0 {
                for frame in lane.rx.iter() {
                    let seq = frame
                        .get(14..22)
                        .map(|s| u64::from_le_bytes(s.try_into().unwrap()));
                    let ring = frame
                        .get(22..24)
                        .map(|s| u16::from_le_bytes(s.try_into().unwrap()));
                    if frame.len() == PKT_LEN && seq == Some(lane.back) && ring == Some(l as u16) {
                        lane.back += 1;
                        back += 1;
                    } else {
                        bad += 1;
                    }
                }
            }
            c.back.fetch_add(back, Relaxed);
            c.bad.fetch_add(bad, Relaxed);
        }
    }
    drop(lanes);
    for p in ports {
        drop(p.into_inner(&poll)?);
    }
    Ok(())
}
