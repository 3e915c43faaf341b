//! netmap's `pkt-gen` on any port: netmap, embedded (`emu:`) or AF_PACKET.
//! It takes C `pkt-gen`'s flags with their C meanings and prints C's output
//! lines, so that a script written for the C tool runs this one.
//!
//! ```text
//! cargo run --release --example pkt_gen -- -i vale0:a -f tx -l 60          # C pkt-gen's flags
//! cargo run --release --example pkt_gen -- -i vale0:b -f rx -W
//! cargo run --release --example pkt_gen -- -i afpacket:veth0 -f tx -R 100000 -n 1000000
//! cargo run --release --example pkt_gen -- -i eth0 --fallback -f rx -T 500
//! cargo run --release --example pkt_gen -- -i 'emu:g{1' --pair 'emu:g}1' -f tx --duration 3
//! cargo run --release --example pkt_gen -- -i 'emu:s{1' --pair 'emu:s}1' -f txseq -n 1000000
//! cargo run --release --example pkt_gen -- -i 'emu:p{1' --pair 'emu:p}1' -f ping -n 10000
//! ```
//!
//! The two ends of an `emu:` pipe may run in two processes, as with C's
//! pkt-gen on the module, and as any user (`pkt_gen -i 'emu:x}1' -f rx` in
//! one shell, `pkt_gen -i 'emu:x{1' -f tx` in another), or in this one:
//! `--pair PEER` opens `PEER` too and runs the matching function on it
//! (tx/rx, txseq/rxseq, ping/pong) in threads of its own. `pkt_gen --help`
//! lists every flag.
//!
//! Output, as C's: the per-interval line (on stderr, after C's debug prefix
//! `time function [line]`), `Sent|Received ... packets ... bytes ... events`
//! and `Speed: ...` at the end (stdout). Ctrl-C or SIGTERM stops the run and
//! prints the totals.

#[path = "common/open.rs"]
mod common;

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netmap_rs::prelude::*;
use netmap_rs::spec::PortKind;
use netmap_test_support::packets::{ipv4_checksum, Rng};

const HELP: &str = "\
usage: pkt_gen -i PORT [-f tx|rx|ping|pong|txseq|rxseq] [options]

netmap's pkt-gen, with C pkt-gen's flags and output lines, on every
netmap-rs backend. Flags as in C:

  -h, --help     show this help and exit
  -i PORT        the port: a netmap name (eth0, vale0:a, pipes x{1 / x}1),
                 `emu:NAME` (embedded kernel) or `afpacket:IF`. As in C, a
                 second -i replaces the first; use --pair for two ports.
  -f FUNCTION    tx (send), rx (receive, the default), ping (send, time the
                 round trip), pong (send back what arrives), txseq (send
                 sequence-numbered frames), rxseq (receive them, report loss
                 and reordering)
  -n COUNT       packets to send or receive (ping: transactions); 0, the
                 default, means no limit. With -p, split among the threads.
                 Unlike C, txseq honours it.
  -l LEN         frame length in bytes, without CRC (default 60, 16..65535).
                 Given a second time: random lengths from the second value
                 (included) to the first (excluded), as C.
  -b BURST       packets per ring per sync (default 512; ping and pong 1)
  -R RATE        packets per second (default: as fast as the port goes)
  -w SECS        wait before starting, for the link to come up (default 2;
                 0 for vale, emu: and afpacket: ports)
  -W             rx/rxseq: exit once no packet came for a second (after the
                 first one arrived); without it they run until -n or a signal
  -T MS          milliseconds between report lines (default 1000)
  -p THREADS     threads, each with a port of its own on one ring (ring i
                 for thread i); default 1 thread on all rings
  -a CPU         pin thread i to CPU CPU+i (modulo -c)
  -c CPUS        how many CPUs -a spreads over (0, the default: all)
  -z, -Z         random source (-z) or destination (-Z) IPv4 address and port
  -s IP[-IP][:PORT[-PORT]]   source address and UDP port, or ranges
                 (default 10.0.0.1:1234). C's IP[:PORT]-IP[:PORT] also works.
                 Ranges step port first, then address, source before
                 destination, as C's update_addresses.
  -d IP[-IP][:PORT[-PORT]]   destination (default 10.1.0.1:1234)
  -S MAC         source MAC (default: the interface's own address, for a real
                 interface; else 00:00:00:00:00:00)
  -D MAC         destination MAC (default ff:ff:ff:ff:ff:ff)
  -C TXSLOTS[,RXSLOTS[,TXRINGS[,RXRINGS]]]
                 rings and slots for ports created by the open (VALE ports,
                 pipes, emu:); one number sets both slot counts, a third
                 both ring counts; 0 keeps the default. Added to the name
                 as its @conf: option (as C advises)
  -F FRAGS       send each packet as FRAGS slots (1 to 63, default 1): all
                 but the last of length/FRAGS bytes, rounded up (NS_MOREFRAG)
  -N             do not normalise units (pps, bps instead of Kpps, Mbps)
  -B             count 24 bytes of framing and CRC per packet in raw bps
  -4             IPv4 (the only family here)

Not in C (long options only):

  --pair PEER    also open PEER and run the matching function there (tx/rx,
                 txseq/rxseq, ping/pong) in this process (the two ends of
                 a pipe may also run in two processes). The receiving side
                 stops a second after the sending side has finished.
  --duration SECS   stop after SECS seconds
  --fallback     let a netmap name fall back to AF_XDP, then AF_PACKET, where
                 netmap cannot serve it
  --promisc      put an AF_PACKET port's interface in promiscuous mode
  --busy         spin on the rings when idle instead of sleeping in poll

Frames: Ethernet, IPv4 (TOS low delay, DF, TTL 64) and UDP with checksum 0
(none, as IPv4 allows), then C's payload text. Payload policy: as C's
sender, one frame is built once and copied into a slot's buffer only when
the buffer may not hold the last packet sent from that slot (the slot's
first use, or NS_BUF_CHANGED set: pipes and VALE swap buffers); under a -l
range every packet gets a copy. Only the fields that change per packet
(lengths under a -l range, addresses under -z/-Z/-s/-d ranges, the txseq
sequence number, the ping timestamp) are written per packet. txseq puts a 32-bit big-endian sequence number at the
start of the UDP payload (byte 42), as C; ping a 32-bit sequence at 42 and
its send time (32-bit seconds, 32-bit nanoseconds) at 46, as C.

Output: a header naming the port and its backend; each -T interval a line
  TIME main_thread [LINE] P pps (N pkts B bps in U usec) A avg_batch S min_space
on stderr (peer_thread for the --pair port); at the end
  Sent|Received N packets B bytes E events S bytes each in T seconds.
  Speed: P pps Bandwidth: B bps (raw R bps). Average batch: A pkts
ping prints RTT min/avg and a log2 histogram (bucket k counts round trips
of 2^k to 2^(k+1) ns) each second and at the end; rxseq a Sequence line.
Ctrl-C or SIGTERM stops and prints the totals (exit 0). Bad arguments: exit 2.
";

const USAGE: &str =
    "usage: pkt_gen -i PORT [-f tx|rx|ping|pong|txseq|rxseq] [-n COUNT] [-l LEN [-l MINLEN]] \
[-b BURST] [-R RATE] [-w SECS] [-W] [-T MS] [-p THREADS] [-a CPU] [-c CPUS] [-z] [-Z] [-s RANGE] [-d RANGE] \
[-S MAC] [-D MAC] [-C CONF] [-F 1] [-N] [-B] [--pair PEER] [--duration SECS] [--fallback] [--promisc] \
[--busy] (--help explains each)";

// ---------------------------------------------------------------- arguments

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Tx,
    Rx,
    Ping,
    Pong,
    TxSeq,
    RxSeq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Sender,
    Receiver,
    Other,
}

impl Func {
    fn parse(s: &str) -> Option<Func> {
        Some(match s {
            "tx" => Func::Tx,
            "rx" => Func::Rx,
            "ping" => Func::Ping,
            "pong" => Func::Pong,
            "txseq" => Func::TxSeq,
            "rxseq" => Func::RxSeq,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::Tx => "tx",
            Func::Rx => "rx",
            Func::Ping => "ping",
            Func::Pong => "pong",
            Func::TxSeq => "txseq",
            Func::RxSeq => "rxseq",
        }
    }

    fn role(self) -> Role {
        match self {
            Func::Tx | Func::TxSeq => Role::Sender,
            Func::Rx | Func::RxSeq => Role::Receiver,
            Func::Ping | Func::Pong => Role::Other,
        }
    }

    /// The function `--pair` runs on the other port.
    fn peer(self) -> Func {
        match self {
            Func::Tx => Func::Rx,
            Func::Rx => Func::Tx,
            Func::TxSeq => Func::RxSeq,
            Func::RxSeq => Func::TxSeq,
            Func::Ping => Func::Pong,
            Func::Pong => Func::Ping,
        }
    }
}

/// IPv4 address and UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Addr {
    ip: u32,
    port: u16,
}

/// An address and port range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AddrRange {
    lo: Addr,
    hi: Addr,
}

#[derive(Debug, Clone)]
struct Args {
    ifname: String,
    pair: Option<String>,
    func: Func,
    pkt_size: usize,
    /// The lower end of a random length range (second -l), or 0.
    pkt_min_size: usize,
    /// Slots per packet (-F).
    frags: usize,
    npackets: u64,
    burst: usize,
    rate: u64,
    wait_link: u64,
    forever: bool,
    report_ms: u64,
    nthreads: usize,
    affinity: Option<usize>,
    cpus: usize,
    random_src: bool,
    random_dst: bool,
    src: AddrRange,
    dst: AddrRange,
    src_name: String,
    dst_name: String,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_mac_name: String,
    dst_mac_name: String,
    /// -C: TX slots, RX slots, TX rings, RX rings (0: default).
    conf: [u32; 4],
    normalize: bool,
    /// Bits of framing per packet counted in raw bandwidth (-B).
    framing: u64,
    fallback: bool,
    promisc: bool,
    busy: bool,
    duration: Option<Duration>,
}

enum Cmd {
    Run(Box<Args>),
    Help,
}

fn parse_ipv4(s: &str) -> Result<u32, String> {
    s.parse::<std::net::Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| format!("`{s}` is not an IPv4 address"))
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse().map_err(|_| format!("`{s}` is not a UDP port"))
}

/// `IP[:PORT]`, the port `None` when absent.
fn parse_ip_port(s: &str) -> Result<(u32, Option<u16>), String> {
    match s.split_once(':') {
        Some((ip, port)) => Ok((parse_ipv4(ip)?, Some(parse_port(port)?))),
        None => Ok((parse_ipv4(s)?, None)),
    }
}

/// `-s`/`-d`: `IP[-IP][:PORT[-PORT]]`, or C's `IP[:PORT][-IP[:PORT]]`; the
/// port defaults to 1234, as in C. Ends given high to low are swapped, as
/// C does.
fn parse_range(s: &str) -> Result<AddrRange, String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let (ip0, port0) = parse_ip_port(a)?;
    let (ip1, port0, port1) = match b {
        None => (ip0, port0, port0),
        // `IP:PORT-PORT`: a port range on one address.
        Some(b) if !b.contains('.') => (ip0, port0, Some(parse_port(b)?)),
        // `IP-IP:PORT-PORT`: both ranges.
        Some(b) if b.contains('-') => {
            let (ip_port, hi) = b.split_once('-').unwrap_or((b, ""));
            let (ip1, p0) = parse_ip_port(ip_port)?;
            if port0.is_some() || p0.is_none() {
                return Err(format!("`{s}`: give the ports once, after the addresses"));
            }
            (ip1, p0, Some(parse_port(hi)?))
        }
        // `IP-IP[:PORT]` or C's `IP:PORT-IP:PORT`.
        Some(b) => {
            let (ip1, p1) = parse_ip_port(b)?;
            (ip1, port0.or(p1), p1.or(port0))
        }
    };
    let (p0, p1) = (port0.unwrap_or(1234), port1.unwrap_or(1234));
    Ok(AddrRange {
        lo: Addr {
            ip: ip0.min(ip1),
            port: p0.min(p1),
        },
        hi: Addr {
            ip: ip0.max(ip1),
            port: p0.max(p1),
        },
    })
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)");
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// -C, as C's parse_nmr_config.
fn parse_conf(s: &str) -> Result<[u32; 4], String> {
    let v = s
        .split(',')
        .map(|n| n.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("-C takes up to 4 numbers separated by commas, not `{s}`"))?;
    if v.is_empty() || v.len() > 4 {
        return Err(format!("-C takes 1 to 4 numbers, not `{s}`"));
    }
    let tx_slots = v[0];
    let rx_slots = v.get(1).copied().unwrap_or(tx_slots);
    let tx_rings = v.get(2).copied().unwrap_or(0);
    let rx_rings = v.get(3).copied().unwrap_or(tx_rings);
    Ok([tx_slots, rx_slots, tx_rings, rx_rings])
}

/// Parses the command line (`args` starts with the program name).
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Cmd, String> {
    use lexopt::prelude::*;
    let e = |e: lexopt::Error| e.to_string();
    let mut p = lexopt::Parser::from_iter(args);
    let mut a = Args {
        ifname: String::new(),
        pair: None,
        func: Func::Rx,
        pkt_size: 60,
        pkt_min_size: 0,
        frags: 1,
        npackets: 0,
        burst: 0,
        rate: 0,
        wait_link: 2,
        forever: true,
        report_ms: 1000,
        nthreads: 1,
        affinity: None,
        cpus: 0,
        random_src: false,
        random_dst: false,
        src: parse_range("10.0.0.1")?,
        dst: parse_range("10.1.0.1")?,
        src_name: "10.0.0.1".into(),
        dst_name: "10.1.0.1".into(),
        src_mac: [0; 6],
        dst_mac: [0xff; 6],
        src_mac_name: "00:00:00:00:00:00".into(),
        dst_mac_name: "ff:ff:ff:ff:ff:ff".into(),
        conf: [0; 4],
        normalize: true,
        framing: 0,
        fallback: false,
        promisc: false,
        busy: false,
        duration: None,
    };
    let mut size_given = false;
    let (mut wait_given, mut src_mac_given) = (false, false);
    while let Some(arg) = p.next().map_err(e)? {
        match arg {
            Short('h') | Long("help") => return Ok(Cmd::Help),
            Short('i') => a.ifname = p.value().map_err(e)?.string().map_err(e)?,
            Short('f') => {
                let v = p.value().map_err(e)?.string().map_err(e)?;
                a.func = Func::parse(&v)
                    .ok_or_else(|| format!("-f takes tx, rx, ping, pong, txseq or rxseq, not `{v}`"))?;
            }
            Short('l') if size_given => a.pkt_min_size = p.value().map_err(e)?.parse().map_err(e)?,
            Short('l') => {
                a.pkt_size = p.value().map_err(e)?.parse().map_err(e)?;
                size_given = true;
            }
            Short('n') => a.npackets = p.value().map_err(e)?.parse().map_err(e)?,
            Short('b') => a.burst = p.value().map_err(e)?.parse().map_err(e)?,
            Short('R') => a.rate = p.value().map_err(e)?.parse().map_err(e)?,
            Short('w') => {
                a.wait_link = p.value().map_err(e)?.parse().map_err(e)?;
                wait_given = true;
            }
            Short('W') => a.forever = false,
            Short('T') => a.report_ms = p.value().map_err(e)?.parse().map_err(e)?,
            Short('p') => a.nthreads = p.value().map_err(e)?.parse().map_err(e)?,
            Short('a') => a.affinity = Some(p.value().map_err(e)?.parse().map_err(e)?),
            Short('c') => a.cpus = p.value().map_err(e)?.parse().map_err(e)?,
            Short('z') => a.random_src = true,
            Short('Z') => a.random_dst = true,
            Short('s') => {
                a.src_name = p.value().map_err(e)?.string().map_err(e)?;
                a.src = parse_range(&a.src_name).map_err(|w| format!("-s: {w}"))?;
            }
            Short('d') => {
                a.dst_name = p.value().map_err(e)?.string().map_err(e)?;
                a.dst = parse_range(&a.dst_name).map_err(|w| format!("-d: {w}"))?;
            }
            Short('S') => {
                a.src_mac_name = p.value().map_err(e)?.string().map_err(e)?;
                a.src_mac = parse_mac(&a.src_mac_name).map_err(|w| format!("-S: {w}"))?;
                src_mac_given = true;
            }
            Short('D') => {
                a.dst_mac_name = p.value().map_err(e)?.string().map_err(e)?;
                a.dst_mac = parse_mac(&a.dst_mac_name).map_err(|w| format!("-D: {w}"))?;
            }
            Short('C') => a.conf = parse_conf(&p.value().map_err(e)?.string().map_err(e)?)?,
            Short('F') => {
                let frags: u32 = p.value().map_err(e)?.parse().map_err(e)?;
                if !(1..=63).contains(&frags) {
                    return Err(format!("-F takes 1 to 63 fragments, not {frags}"));
                }
                a.frags = frags as usize;
            }
            Short('N') => a.normalize = false,
            Short('B') => a.framing = 24 * 8,
            Short('4') => {}
            Short(c @ ('6' | 'X' | 'H' | 'P' | 'I' | 'r' | 'A' | 'o' | 'M' | 'v')) => {
                return Err(format!("C pkt-gen's -{c} is not implemented here"));
            }
            Long("pair") => a.pair = Some(p.value().map_err(e)?.string().map_err(e)?),
            Long("duration") => {
                let s: f64 = p.value().map_err(e)?.parse().map_err(e)?;
                if !(s.is_finite() && s > 0.0) {
                    return Err("--duration takes a positive number of seconds".into());
                }
                a.duration = Some(Duration::from_secs_f64(s));
            }
            Long("fallback") => a.fallback = true,
            Long("promisc") => a.promisc = true,
            Long("busy") => a.busy = true,
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if a.ifname.is_empty() {
        return Err("missing ifname: -i PORT is required".into());
    }
    if !(16..=65535).contains(&a.pkt_size) {
        return Err(format!("bad pktsize {} [16..65535]", a.pkt_size));
    }
    if a.pkt_min_size > 0 && !(16..=a.pkt_size).contains(&a.pkt_min_size) {
        return Err(format!("bad pktminsize {} [16..{}]", a.pkt_min_size, a.pkt_size));
    }
    let need = match a.func {
        Func::TxSeq => SEQ_OFF + 4,
        Func::Ping => TS_OFF + 8,
        _ => 16,
    };
    if (a.pkt_min_size > 0 && a.pkt_min_size < need) || a.pkt_size < need {
        return Err(format!(
            "-f {} needs frames of at least {need} bytes",
            a.func.name()
        ));
    }
    if a.nthreads == 0 {
        return Err("-p takes at least 1 thread".into());
    }
    if a.report_ms == 0 {
        return Err("-T takes a positive number of milliseconds".into());
    }
    if a.burst == 0 {
        a.burst = match a.func {
            Func::Ping | Func::Pong => 1,
            _ => 512,
        };
    }
    if !wait_given
        && ["vale", "emu:", "afpacket:"]
            .iter()
            .any(|p| a.ifname.starts_with(p))
    {
        a.wait_link = 0;
    }
    if !src_mac_given {
        if let Some((name, mac)) = interface_mac(&a.ifname) {
            (a.src_mac_name, a.src_mac) = (name, mac);
        }
    }
    if a.rate > 0 {
        // As C: about 300 bursts a second, none smaller than one packet.
        a.burst = a.burst.min((a.rate / 300) as usize).max(1);
    }
    Ok(Cmd::Run(Box::new(a)))
}

/// The hardware address of the interface `port` names, as C pkt-gen takes
/// it for the default source MAC: for a netmap, AF_PACKET or AF_XDP name of a real
/// interface (not a pipe, a VALE port or an `emu:` port), read from sysfs.
fn interface_mac(port: &str) -> Option<(String, [u8; 6])> {
    let spec = netmap_rs::spec::parse(port).ok()?;
    if !matches!(spec.kind, PortKind::Netmap | PortKind::AfPacket | PortKind::AfXdp) || spec.pipe.is_some() {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{}/address", spec.ifname)).ok()?;
    let text = text.trim().to_owned();
    let mac = parse_mac(&text).ok()?;
    Some((text, mac))
}

// ------------------------------------------------------------------ frames

/// Ethernet, IPv4 and UDP headers: where C's payload (`body`) starts.
const HEADERS: usize = 14 + 20 + 8;
/// Where txseq's sequence number and ping's sequence number go.
const SEQ_OFF: usize = HEADERS;
/// Where ping's send time goes (C's `struct tstamp` at `p + 46`).
const TS_OFF: usize = HEADERS + 4;

const PAYLOAD: &[u8] = b"netmap pkt-gen DIRECT payload\nhttp://info.iet.unipi.it/~luigi/netmap/ ";

/// What a sender writes into each packet besides the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    None,
    /// txseq: a big-endian 32-bit sequence number at [`SEQ_OFF`].
    Seq,
    /// ping: a native 32-bit sequence number at [`SEQ_OFF`] and the send
    /// time at [`TS_OFF`], as C's ping_body.
    Ping,
}

/// The frames a sender sends: C's `struct pkt` template, and the state of
/// what changes per packet (C's update_addresses, update_size, sequence).
struct Gen {
    /// The frame at the largest length.
    frame: Vec<u8>,
    /// Lengths from `min` to `max` (both included); equal for a fixed one.
    min: usize,
    max: usize,
    src: Addr,
    dst: Addr,
    src_range: AddrRange,
    dst_range: AddrRange,
    random_src: bool,
    random_dst: bool,
    /// Whether addresses change per packet.
    moving: bool,
    stamp: Stamp,
    seq: u32,
    rng: Rng,
    /// Slots per packet (-F).
    frags: usize,
}

impl Gen {
    fn new(a: &Args, stamp: Stamp, seed: u64) -> Gen {
        let len = a.pkt_size;
        let mut f = vec![0u8; len.max(HEADERS)];
        f[..6].copy_from_slice(&a.dst_mac);
        f[6..12].copy_from_slice(&a.src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        // Version 4, 5 words; TOS low delay; id 0; DF; TTL 64; UDP.
        f[14..34].copy_from_slice(&[
            0x45, 0x10, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        for (b, p) in f[HEADERS..].iter_mut().zip(PAYLOAD.iter().cycle()) {
            *b = *p;
        }
        let moving = a.random_src || a.random_dst || a.src.lo != a.src.hi || a.dst.lo != a.dst.hi;
        let mut g = Gen {
            frame: f,
            min: if a.pkt_min_size > 0 { a.pkt_min_size } else { len },
            // C's random lengths stop below the first -l.
            max: if a.pkt_min_size > 0 && a.pkt_min_size < len {
                len - 1
            } else {
                len
            },
            src: a.src.lo,
            dst: a.dst.lo,
            src_range: a.src,
            dst_range: a.dst,
            random_src: a.random_src,
            random_dst: a.random_dst,
            moving,
            stamp,
            seq: 0,
            rng: Rng::new(seed),
            frags: a.frags,
        };
        let mut frame = std::mem::take(&mut g.frame);
        g.write_headers(&mut frame);
        g.frame = frame;
        g.frame.truncate(len);
        g
    }

    /// The next packet's length.
    fn next_len(&mut self) -> usize {
        if self.min == self.max {
            self.max
        } else {
            self.rng.range(self.min, self.max)
        }
    }

    /// Writes the length, addresses and ports and the IPv4 checksum into
    /// `buf`, a frame of `buf.len()` bytes (whole headers only).
    fn write_headers(&self, buf: &mut [u8]) {
        if buf.len() < HEADERS {
            return;
        }
        let len = buf.len();
        buf[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        buf[24..26].fill(0);
        buf[26..30].copy_from_slice(&self.src.ip.to_be_bytes());
        buf[30..34].copy_from_slice(&self.dst.ip.to_be_bytes());
        let sum = ipv4_checksum(&buf[14..34]);
        buf[24..26].copy_from_slice(&sum.to_be_bytes());
        buf[34..36].copy_from_slice(&self.src.port.to_be_bytes());
        buf[36..38].copy_from_slice(&self.dst.port.to_be_bytes());
        buf[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    }

    /// Whether every packet is the template itself: one length, fixed
    /// addresses, nothing stamped.
    fn is_constant(&self) -> bool {
        self.min == self.max && !self.moving && matches!(self.stamp, Stamp::None)
    }

    /// Writes what changes per packet into `buf`, which holds a copy of the
    /// template's first `buf.len()` bytes (or of an earlier packet from
    /// this generator), and moves on to the next packet.
    fn stamp(&mut self, buf: &mut [u8]) {
        if self.moving || self.min != self.max {
            self.write_headers(buf);
        }
        match self.stamp {
            Stamp::None => {}
            Stamp::Seq => buf[SEQ_OFF..SEQ_OFF + 4].copy_from_slice(&self.seq.to_be_bytes()),
            Stamp::Ping => {
                let t = now_ns();
                buf[SEQ_OFF..SEQ_OFF + 4].copy_from_slice(&self.seq.to_ne_bytes());
                buf[TS_OFF..TS_OFF + 4].copy_from_slice(&((t / 1_000_000_000) as u32).to_ne_bytes());
                buf[TS_OFF + 4..TS_OFF + 8].copy_from_slice(&((t % 1_000_000_000) as u32).to_ne_bytes());
            }
        }
        self.seq = self.seq.wrapping_add(1);
        if self.moving {
            self.advance();
        }
    }

    /// C's update_ip: the source steps (port first, then address) and the
    /// destination steps only when the source wraps; random ends are drawn
    /// anew each packet.
    fn advance(&mut self) {
        if self.random_src {
            self.src = self.random();
        } else if !step(&mut self.src, &self.src_range) {
            return;
        }
        if self.random_dst {
            self.dst = self.random();
        } else {
            step(&mut self.dst, &self.dst_range);
        }
    }

    fn random(&mut self) -> Addr {
        let r = self.rng.next_u64();
        Addr {
            ip: r as u32,
            port: (r >> 32) as u16,
        }
    }
}

/// Steps `a` through `r`; returns whether it wrapped to the start.
fn step(a: &mut Addr, r: &AddrRange) -> bool {
    if a.port < r.hi.port {
        a.port += 1;
        return false;
    }
    a.port = r.lo.port;
    if a.ip < r.hi.ip {
        a.ip += 1;
        return false;
    }
    a.ip = r.lo.ip;
    true
}

/// Stages up to `n` packets from `gen` on `ring` and publishes them;
/// returns how many and their bytes.
///
/// A slot whose buffer may not hold the slot's last packet gets a copy of
/// the template, then every slot the per-packet fields (`Gen::stamp`).
/// Under -F each packet is built aside and sent in its fragments.
fn fill_burst(ring: &mut TxRing<'_>, gen: &mut Gen, n: usize) -> Result<(usize, u64), Error> {
    if gen.frags > 1 {
        return fill_fragmented(ring, gen, n);
    }
    let mut batch = ring.batch();
    let mut bytes = 0u64;
    if gen.is_constant() {
        // Every packet is the template: as C, a buffer that holds our last
        // packet from its slot is sent as it is, with only its length set.
        let frame = &gen.frame[..gen.max];
        let mut sent = 0;
        while sent < n {
            let (buf, fresh) = match batch.push_reuse(frame.len()) {
                Ok(b) => b,
                Err(Error::RingFull { .. }) => break,
                Err(e) => return Err(e),
            };
            if fresh {
                buf.copy_from_slice(frame);
            }
            sent += 1;
        }
        return Ok((batch.commit(), (sent * frame.len()) as u64));
    }
    // Under a -l range a reused buffer may hold a shorter earlier packet,
    // so every packet gets the template.
    let always = gen.min != gen.max;
    for _ in 0..n {
        let len = gen.next_len();
        let (buf, fresh) = match batch.push_reuse(len) {
            Ok(b) => b,
            Err(Error::RingFull { .. }) => break,
            Err(e) => return Err(e),
        };
        if fresh || always {
            buf.copy_from_slice(&gen.frame[..len]);
        }
        gen.stamp(buf);
        bytes += len as u64;
    }
    Ok((batch.commit(), bytes))
}

/// `fill_burst` under -F: each packet is the template with its per-packet
/// fields, sent as `gen.frags` slots.
fn fill_fragmented(ring: &mut TxRing<'_>, gen: &mut Gen, n: usize) -> Result<(usize, u64), Error> {
    let (mut sent, mut bytes) = (0, 0u64);
    let mut pkt = Vec::with_capacity(gen.max);
    while sent < n {
        let len = gen.next_len();
        let frag = len.div_ceil(gen.frags);
        // Stamp only a packet that will go: the stamp moves the sequence on.
        if ring.space() < len.div_ceil(frag.min(ring.buf_size())) {
            break;
        }
        pkt.clear();
        pkt.extend_from_slice(&gen.frame[..len]);
        gen.stamp(&mut pkt);
        ring.send_fragments(&pkt, frag)?;
        sent += 1;
        bytes += len as u64;
    }
    Ok((sent, bytes))
}

// ------------------------------------------------------------------ output

/// C's norm(): `1.234 M`, or without normalising (`-N`) `1234000 `.
fn norm(val: f64, normalize: bool) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let (mut v, mut i) = (val, 0);
    if !normalize {
        return format!("{v:.0} ");
    }
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.3} {}", UNITS[i])
}

/// Nanoseconds since the program started (all threads, one clock).
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// C's debug prefix: `sss.uuuuuu`, the wall clock's seconds modulo 1000.
fn wall() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{:03}.{:06}", t.as_secs() % 1000, t.subsec_micros())
}

/// C's `D()`: a line on stderr after `time function [line]`.
macro_rules! d {
    ($func:expr, $($arg:tt)*) => {
        eprintln!("{} {} [{}] {}", wall(), $func, line!(), format_args!($($arg)*))
    };
}

// ---------------------------------------------------------------- counters

/// C's `min_space` before anything is measured in an interval.
const NO_SPACE: u64 = 99999;

/// One thread's counters, read by the reporting thread (C's `targ->ctr`).
struct Ctrs {
    pkts: AtomicU64,
    bytes: AtomicU64,
    events: AtomicU64,
    min_space: AtomicU64,
    /// When the first and the last packet moved ([`now_ns`]; 0: none yet).
    tic: AtomicU64,
    toc: AtomicU64,
    done: AtomicBool,
}

impl Ctrs {
    fn new() -> Arc<Ctrs> {
        Arc::new(Ctrs {
            pkts: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            events: AtomicU64::new(0),
            min_space: AtomicU64::new(NO_SPACE),
            tic: AtomicU64::new(0),
            toc: AtomicU64::new(0),
            done: AtomicBool::new(false),
        })
    }

    fn publish(&self, pkts: u64, bytes: u64, events: u64) {
        self.pkts.store(pkts, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        self.events.store(events, Ordering::Relaxed);
    }

    fn space(&self, space: u64) {
        self.min_space.fetch_min(space, Ordering::Relaxed);
    }
}

// ----------------------------------------------------------------- signals

/// The signal that asked to stop (0: none). The handler only stores here.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::Relaxed);
}

/// Installs [`on_signal`] for SIGINT and SIGTERM.
fn catch_signals() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: all-zero is a valid `sigaction` (no flags, empty mask),
        // completed below before use.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `sa` is initialised and names a handler that only does an
        // atomic store, which is async-signal-safe; the old action is not
        // wanted (null).
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- workers

/// What one thread works on, and when it stops.
struct Job {
    port: Netmap,
    func: Func,
    a: Arc<Args>,
    ctrs: Arc<Ctrs>,
    /// Packets this thread sends or receives (0: no limit).
    quota: u64,
    /// The other side's counters with --pair (empty otherwise).
    peers: Vec<Arc<Ctrs>>,
    deadline: Option<Instant>,
    /// The thread's index, for its random seed.
    me: usize,
}

impl Job {
    /// A signal came or --duration passed.
    fn stopped(&self) -> bool {
        SIGNAL.load(Ordering::Relaxed) != 0 || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The --pair side has finished.
    fn peers_done(&self) -> bool {
        !self.peers.is_empty() && self.peers.iter().all(|c| c.done.load(Ordering::Relaxed))
    }

    fn left(&self, done: u64) -> usize {
        if self.quota == 0 {
            usize::MAX
        } else {
            self.quota.saturating_sub(done).try_into().unwrap_or(usize::MAX)
        }
    }

    fn gen(&self, stamp: Stamp) -> Gen {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Gen::new(&self.a, stamp, seed ^ (self.me as u64) << 48)
    }

    /// Waits for RX packets a little (spins with --busy).
    fn idle_rx(&self) -> Result<(), Error> {
        if !self.a.busy {
            self.port.poll(Some(Duration::from_millis(20)))?;
        }
        Ok(())
    }

    fn run(&self) -> Result<(), Error> {
        match self.func {
            Func::Tx => self.sender(Stamp::None),
            Func::TxSeq => self.sender(Stamp::Seq),
            Func::Rx => self.receiver(None),
            Func::RxSeq => self.receiver(Some(SeqCheck::default())),
            Func::Ping => self.ping(),
            Func::Pong => self.pong(),
        }
    }

    fn tx_rings(&self) -> Result<Vec<TxRing<'_>>, Error> {
        let rings = (0..self.port.num_tx_rings())
            .map(|i| self.port.tx_ring(i))
            .collect::<Result<Vec<_>, _>>()?;
        if rings.is_empty() {
            return Err(Error::Unsupported {
                backend: self.port.backend(),
                what: format!("transmitting on {} (it has no TX rings)", self.port.name()),
                hint: "open the port without /R".into(),
            });
        }
        Ok(rings)
    }

    fn rx_rings(&self) -> Result<Vec<RxRing<'_>>, Error> {
        let rings = (0..self.port.num_rx_rings())
            .map(|i| self.port.rx_ring(i))
            .collect::<Result<Vec<_>, _>>()?;
        if rings.is_empty() {
            return Err(Error::Unsupported {
                backend: self.port.backend(),
                what: format!("receiving on {} (it has no RX rings)", self.port.name()),
                hint: "open the port without /T".into(),
            });
        }
        Ok(rings)
    }

    /// C's sender_body (tx) and txseq_body (txseq, which C runs on the first
    /// TX ring only).
    fn sender(&self, stamp: Stamp) -> Result<(), Error> {
        let mut rings = self.tx_rings()?;
        if stamp == Stamp::Seq {
            rings.truncate(1);
        }
        let mut gen = self.gen(stamp);
        if let Some(r) = rings.first() {
            let max = r.max_packet().min(r.buf_size());
            if gen.max > max {
                return Err(Error::PacketTooLarge { len: gen.max, max });
            }
        }
        let mut pace = Pacer::new(&self.a);
        let (mut sent, mut bytes, mut events) = (0u64, 0u64, 0u64);
        self.ctrs.tic.store(now_ns(), Ordering::Relaxed);
        while !self.stopped() && self.left(sent) > 0 {
            pace.budget(self);
            let mut progress = false;
            for ring in rings.iter_mut() {
                let limit = pace.left().min(self.left(sent));
                if limit == 0 {
                    break;
                }
                if ring.space() == 0 {
                    // Learn of the slots sent since the last sync.
                    ring.sync()?;
                }
                self.ctrs.space(ring.space() as u64);
                if ring.space() == 0 {
                    continue;
                }
                let (m, b) = fill_burst(ring, &mut gen, limit)?;
                ring.sync()?;
                if m > 0 {
                    progress = true;
                    events += 1;
                    sent += m as u64;
                    bytes += b;
                    pace.spend(m);
                }
            }
            self.ctrs.publish(sent, bytes, events);
            if !progress {
                self.port.poll_writable(Some(Duration::from_millis(20)))?;
            }
        }
        // Flush, and let the rings drain (bounded, as a signal stops it).
        let until = Instant::now() + Duration::from_secs(1);
        for ring in rings.iter_mut() {
            ring.sync()?;
            while ring.space() + 1 < ring.num_slots()
                && Instant::now() < until
                && SIGNAL.load(Ordering::Relaxed) == 0
            {
                thread::sleep(Duration::from_micros(50));
                ring.sync()?;
            }
        }
        self.ctrs.toc.store(now_ns(), Ordering::Relaxed);
        self.ctrs.publish(sent, bytes, events);
        Ok(())
    }

    /// C's receiver_body (and rxseq_body with `seq`): waits for the first
    /// packet, then counts; with -W (or once the --pair sender is done)
    /// exits after a second without packets.
    fn receiver(&self, mut seq: Option<SeqCheck>) -> Result<(), Error> {
        let mut rings = self.rx_rings()?;
        let burst = self.a.burst;
        let (mut pkts, mut bytes, mut events) = (0u64, 0u64, 0u64);
        let mut last = Instant::now();
        let mut started = false;
        while !self.stopped() && self.left(pkts) > 0 {
            let mut got = 0u64;
            let mut space = 0u64;
            for (j, ring) in rings.iter_mut().enumerate() {
                // What the last poll brought in, else a sync: as C's
                // receiver, one system call a batch.
                let mut pending = ring.refresh()?;
                if pending == 0 {
                    pending = ring.sync()?;
                }
                space += (ring.num_slots() - pending) as u64;
                let limit = burst.min(self.left(pkts + got));
                let mut m = 0;
                if let Some(s) = seq.as_mut() {
                    while m < limit {
                        let Some(f) = ring.recv() else { break };
                        s.check(j, f.payload());
                        bytes += f.len() as u64;
                        m += 1;
                    }
                } else {
                    // As C's receiver: only the slots' lengths are read.
                    let (n, b) = ring.discard(limit);
                    (m, bytes) = (n, bytes + b as u64);
                }
                if m > 0 {
                    events += 1;
                    got += m as u64;
                }
            }
            self.ctrs.space(space);
            if got > 0 {
                last = Instant::now();
                if !started {
                    started = true;
                    self.ctrs.tic.store(now_ns(), Ordering::Relaxed);
                }
                pkts += got;
                self.ctrs.toc.store(now_ns(), Ordering::Relaxed);
                self.ctrs.publish(pkts, bytes, events);
                continue;
            }
            let quiet = last.elapsed() >= Duration::from_secs(1);
            if quiet && (self.peers_done() || (started && !self.a.forever)) {
                break;
            }
            self.idle_rx()?;
        }
        // Hand the slots read back (a pipe's sender waits for them).
        for ring in rings.iter_mut() {
            ring.sync()?;
        }
        self.ctrs.publish(pkts, bytes, events);
        if let Some(s) = seq {
            s.report();
        }
        Ok(())
    }

    /// C's ping_body: sends -b packets carrying their send time, waits for
    /// them to come back and keeps RTT statistics in a log2 histogram.
    fn ping(&self) -> Result<(), Error> {
        let mut tx = self.port.tx_ring(0)?;
        let mut rings = self.rx_rings()?;
        let mut gen = self.gen(Stamp::Ping);
        let mut pace = Pacer::new(&self.a);
        let (mut sent, mut events) = (0u64, 0u64);
        let mut interval = Rtt::default();
        let mut total = Rtt::default();
        let mut last_print = Instant::now();
        let size = gen.max as u64;
        self.ctrs.tic.store(now_ns(), Ordering::Relaxed);
        while !self.stopped() && self.left(sent) > 0 {
            pace.budget(self);
            let limit = pace.left().min(self.left(sent));
            let (m, _) = fill_burst(&mut tx, &mut gen, limit)?;
            tx.sync()?;
            if m > 0 {
                events += 1;
                sent += m as u64;
                pace.spend(m);
            } else {
                d!("ping_body", "-- ouch, cannot send");
            }
            self.ctrs.publish(sent, sent * size, events);
            // Wait up to 3 s for replies, as C's poll.
            let until = Instant::now() + Duration::from_secs(3);
            let mut replies = 0;
            while replies == 0 && !self.stopped() {
                for ring in rings.iter_mut() {
                    ring.sync()?;
                    while let Some(f) = ring.recv() {
                        let p = f.payload();
                        if p.len() >= TS_OFF + 8 {
                            let word = |o: usize| u32::from_ne_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
                            let t = u64::from(word(TS_OFF)) * 1_000_000_000 + u64::from(word(TS_OFF + 4));
                            let rtt = now_ns().saturating_sub(t);
                            interval.add(rtt);
                            total.add(rtt);
                        }
                        replies += 1;
                    }
                }
                if replies == 0 {
                    if Instant::now() >= until {
                        d!("ping_body", "poll error on queue {}: timeout", self.me);
                        break;
                    }
                    self.idle_rx()?;
                }
            }
            if last_print.elapsed() >= Duration::from_secs(1) && interval.count > 0 {
                interval.print("count", interval.count);
                interval = Rtt::default();
                last_print = Instant::now();
            }
        }
        self.ctrs.toc.store(now_ns(), Ordering::Relaxed);
        if total.count > 0 {
            total.print("RTT over", total.count);
        }
        Ok(())
    }

    /// C's pong_body: sends back every packet, source and destination MAC
    /// and IPv4 addresses swapped.
    fn pong(&self) -> Result<(), Error> {
        let mut tx = self.port.tx_ring(0)?;
        let mut rings = self.rx_rings()?;
        let (mut sent, mut bytes, mut events) = (0u64, 0u64, 0u64);
        while !self.stopped() && self.left(sent) > 0 && !self.peers_done() {
            let mut batch = tx.batch();
            for ring in rings.iter_mut() {
                ring.sync()?;
                // Packets that find no TX slot are dropped, as in C.
                while let Some(f) = ring.recv() {
                    let src = f.payload();
                    let Ok(dst) = batch.push(src.len()) else {
                        continue;
                    };
                    dst.copy_from_slice(src);
                    if src.len() >= 14 {
                        dst[..6].copy_from_slice(&src[6..12]);
                        dst[6..12].copy_from_slice(&src[..6]);
                    }
                    if src.len() >= 34 && src[12..14] == [0x08, 0x00] {
                        dst[26..30].copy_from_slice(&src[30..34]);
                        dst[30..34].copy_from_slice(&src[26..30]);
                    }
                    bytes += src.len() as u64;
                }
            }
            let m = batch.commit() as u64;
            tx.sync()?;
            if m > 0 {
                if sent == 0 {
                    self.ctrs.tic.store(now_ns(), Ordering::Relaxed);
                }
                events += 1;
                sent += m;
                self.ctrs.toc.store(now_ns(), Ordering::Relaxed);
                self.ctrs.publish(sent, bytes, events);
            } else {
                self.idle_rx()?;
            }
        }
        Ok(())
    }
}

/// C's rate limit: bursts of -b packets (at most a 300th of -R), one each
/// `burst / rate` seconds.
struct Pacer {
    burst: usize,
    period: Option<Duration>,
    next: Instant,
    budget: usize,
}

impl Pacer {
    fn new(a: &Args) -> Pacer {
        Pacer {
            burst: a.burst,
            period: (a.rate > 0).then(|| Duration::from_secs_f64(a.burst as f64 / a.rate as f64)),
            next: Instant::now(),
            budget: 0,
        }
    }

    /// Under -R, once this period's burst is spent, waits for the next
    /// period (C's wait_time: sleeping while more than 1 ms is left).
    fn budget(&mut self, job: &Job) {
        let Some(period) = self.period else {
            return;
        };
        if self.budget == 0 {
            self.next += period;
            loop {
                let now = Instant::now();
                if now >= self.next || job.stopped() {
                    break;
                }
                if self.next - now > Duration::from_millis(1) {
                    thread::sleep(Duration::from_millis(1));
                } else {
                    std::hint::spin_loop();
                }
            }
            self.budget = self.burst;
        }
    }

    /// Packets to send now: under -R what is left of this period's burst,
    /// else -b.
    fn left(&self) -> usize {
        if self.period.is_some() {
            self.budget
        } else {
            self.burst
        }
    }

    fn spend(&mut self, n: usize) {
        self.budget = self.budget.saturating_sub(n);
    }
}

/// Round-trip times: count, minimum, sum, and C's 64 log2 buckets.
struct Rtt {
    count: u64,
    min: u64,
    sum: u64,
    buckets: [u64; 64],
}

impl Default for Rtt {
    fn default() -> Rtt {
        Rtt {
            count: 0,
            min: u64::MAX,
            sum: 0,
            buckets: [0; 64],
        }
    }
}

impl Rtt {
    fn add(&mut self, ns: u64) {
        self.count += 1;
        self.min = self.min.min(ns);
        self.sum += ns;
        self.buckets[63 - ns.max(1).leading_zeros() as usize] += 1;
    }

    /// C's lines: `count N RTT: min X av Y ns` (or `RTT over N packets:
    /// ...`), then the non-empty span of buckets.
    fn print(&self, what: &str, n: u64) {
        let av = self.sum / self.count.max(1);
        if what == "count" {
            d!("ping_body", "count {n} RTT: min {} av {av} ns", self.min);
        } else {
            d!("ping_body", "RTT over {n} packets: min {} av {av} ns", self.min);
        }
        let lo = self.buckets.iter().position(|&b| b > 0).unwrap_or(0);
        let hi = self.buckets.iter().rposition(|&b| b > 0).unwrap_or(0);
        let row: String = self.buckets[lo..=hi].iter().map(|b| format!(" {b:5}")).collect();
        d!("ping_body", "k: {} .. {}\n\t{row}", 1u64 << lo, 1u64 << hi);
    }
}

/// rxseq's check of txseq's sequence numbers, per RX ring: packets seen,
/// the highest number (relative to the first), out-of-order arrivals.
#[derive(Default)]
struct SeqCheck {
    rings: Vec<Option<SeqRing>>,
    reordered: u64,
    short: u64,
    /// C's RD(2, ...): at most 2 gap or order lines a second.
    said: u32,
    said_at: Option<Instant>,
}

struct SeqRing {
    first: u32,
    expect: u32,
    /// Highest number seen, counted from `first`.
    high: u64,
    seen: u64,
}

impl SeqCheck {
    fn check(&mut self, ring: usize, p: &[u8]) {
        if p.len() < SEQ_OFF + 4 {
            self.short += 1;
            return;
        }
        let seq = u32::from_be_bytes([p[SEQ_OFF], p[SEQ_OFF + 1], p[SEQ_OFF + 2], p[SEQ_OFF + 3]]);
        if self.rings.len() <= ring {
            self.rings.resize_with(ring + 1, || None);
        }
        let Some(r) = &mut self.rings[ring] else {
            self.rings[ring] = Some(SeqRing {
                first: seq,
                expect: seq.wrapping_add(1),
                high: 0,
                seen: 1,
            });
            return;
        };
        r.seen += 1;
        r.high = r.high.max(u64::from(seq.wrapping_sub(r.first)));
        if seq != r.expect {
            let (exp, gap) = (r.expect, seq.wrapping_sub(r.expect) < (u32::MAX >> 1));
            if !gap {
                self.reordered += 1;
            }
            if self.say() {
                if gap {
                    d!("rxseq_body", "Sequence GAP: exp {exp} found {seq}");
                } else {
                    d!("rxseq_body", "Sequence OUT OF ORDER: exp {exp} found {seq}");
                }
            }
        }
        if let Some(r) = &mut self.rings[ring] {
            r.expect = seq.wrapping_add(1);
        }
    }

    fn say(&mut self) -> bool {
        if self.said_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.said_at = Some(Instant::now());
            self.said = 0;
        }
        self.said += 1;
        self.said <= 2
    }

    /// `Sequence: N packets checked, L lost, R out of order.` (lost: the
    /// numbers between each ring's first and highest that never came).
    fn report(&self) {
        let rings = self.rings.iter().flatten();
        let seen: u64 = rings.clone().map(|r| r.seen).sum();
        let lost: u64 = rings.map(|r| (r.high + 1).saturating_sub(r.seen)).sum();
        println!(
            "Sequence: {seen} packets checked, {lost} lost, {} out of order, {} too short.",
            self.reordered, self.short
        );
    }
}

// ------------------------------------------------------------------- ports

type Fail = Box<dyn std::error::Error + Send + Sync>;

/// Opens `name` with -C's rings and slots: one port, or with -p one per
/// ring (as C opens a ring-specific name per thread). -C becomes the name's
/// `@conf:` option, as C's own deprecation note for -C advises, which sets
/// the same ring and slot counts as the builder's methods.
fn open_ports(name: &str, a: &Args) -> Result<Vec<Netmap>, Fail> {
    let keys = ["tx_slots", "rx_slots", "tx_rings", "rx_rings"];
    let conf: Vec<String> = keys
        .iter()
        .zip(a.conf)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    let name = if conf.is_empty() {
        name.to_owned()
    } else {
        format!("{name}@conf:{}", conf.join(","))
    };
    if a.nthreads == 1 {
        return Ok(vec![common::open(&name, a.fallback, a.promisc)?]);
    }
    let mut ports = common::builder(&name, a.fallback, a.promisc).build_per_ring()?;
    if ports.len() < a.nthreads {
        return Err(format!(
            "bad nthreads {}, have {} queues on {name}",
            a.nthreads,
            ports.len()
        )
        .into());
    }
    ports.truncate(a.nthreads);
    Ok(ports)
}

/// How many CPUs -a spreads threads over.
fn cpus(a: &Args) -> usize {
    let system = thread::available_parallelism().map_or(1, |n| n.get());
    if a.cpus == 0 {
        system
    } else {
        a.cpus.min(system)
    }
}

/// C's header lines, and the backend the port got.
fn header(name: &str, func: Func, ports: &[Netmap], a: &Args) {
    let role = func.role();
    let queues: usize = ports
        .iter()
        .map(|p| {
            if role == Role::Sender {
                p.num_tx_rings()
            } else {
                p.num_rx_rings()
            }
        })
        .sum();
    let doing = match role {
        Role::Sender => "Sending on",
        Role::Receiver => "Receiving from",
        Role::Other => "Working on",
    };
    println!(
        "{doing} {name}: {queues} queues, {} threads and {} cpus.",
        ports.len(),
        cpus(a)
    );
    if role == Role::Sender {
        println!(
            "{} -> {} ({} -> {})",
            a.src_name, a.dst_name, a.src_mac_name, a.dst_mac_name
        );
    }
    if let Some(port) = ports.first() {
        let (txs, rxs) = port.num_slots();
        println!(
            "pkt_gen: {} ({}) on {} backend, {} TX / {} RX rings of {} / {} slots{}",
            port.name(),
            func.name(),
            port.backend(),
            port.num_tx_rings(),
            port.num_rx_rings(),
            txs,
            rxs,
            common::fallback_note(port)
        );
    }
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no CPU {cpu}"),
        ));
    }
    // SAFETY: all-zero is a valid, empty `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid set and `cpu` is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid `cpu_set_t` of
    // the size passed, only read.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ------------------------------------------------------------- main thread

/// The threads of one port (-i, or --pair's), reported together as C's
/// main_thread reports its threads.
struct Group {
    /// The function field of the interval lines.
    label: &'static str,
    func: Func,
    ctrs: Vec<Arc<Ctrs>>,
    threads: Vec<JoinHandle<Result<(), Fail>>>,
    prev: (u64, u64, u64),
}

impl Group {
    fn new(label: &'static str, func: Func, n: usize) -> Group {
        Group {
            label,
            func,
            ctrs: (0..n).map(|_| Ctrs::new()).collect(),
            threads: Vec::new(),
            prev: (0, 0, 0),
        }
    }

    /// Starts a thread per port; thread `first + i` gets -a's CPU
    /// `first + i`.
    fn start(
        &mut self,
        ports: Vec<Netmap>,
        peers: &[Arc<Ctrs>],
        a: &Arc<Args>,
        deadline: Option<Instant>,
        first: usize,
    ) {
        let n = ports.len() as u64;
        // With --pair the answering side (rx, rxseq, pong) stops after the
        // sending side, not at --duration, so that it takes in the packets
        // still in flight.
        let answers = !peers.is_empty() && !matches!(self.func, Func::Tx | Func::TxSeq | Func::Ping);
        let deadline = if answers { None } else { deadline };
        for (i, port) in ports.into_iter().enumerate() {
            // -n split among the threads, the remainder to the first ones.
            let quota = a.npackets / n + u64::from((i as u64) < a.npackets % n);
            let job = Job {
                port,
                func: self.func,
                a: a.clone(),
                ctrs: self.ctrs[i].clone(),
                quota,
                peers: peers.to_vec(),
                deadline,
                me: first + i,
            };
            self.threads.push(thread::spawn(move || {
                let r = job.pin_and_run();
                job.ctrs.done.store(true, Ordering::Relaxed);
                r
            }));
        }
    }

    fn done(&self) -> bool {
        self.ctrs.iter().all(|c| c.done.load(Ordering::Relaxed))
    }

    fn sum(&self, f: impl Fn(&Ctrs) -> u64) -> u64 {
        self.ctrs.iter().map(|c| f(c)).sum()
    }

    /// C's per-interval line, over `usec` microseconds.
    fn report(&mut self, usec: u64, a: &Args) {
        let load = |x: &AtomicU64| x.load(Ordering::Relaxed);
        let cur = (
            self.sum(|c| load(&c.pkts)),
            self.sum(|c| load(&c.bytes)),
            self.sum(|c| load(&c.events)),
        );
        let min_space = self.sum(|c| c.min_space.swap(NO_SPACE, Ordering::Relaxed));
        let (pkts, bytes, events) = (cur.0 - self.prev.0, cur.1 - self.prev.1, cur.2 - self.prev.2);
        self.prev = cur;
        let pps = (pkts * 1_000_000 + usec / 2) / usec;
        let avg_batch = if events > 0 {
            pkts as f64 / events as f64
        } else {
            0.0
        };
        let bps = 1e6 * (bytes as f64 * 8.0 + pkts as f64 * a.framing as f64) / usec as f64;
        d!(
            self.label,
            "{}pps ({}pkts {}bps in {usec} usec) {avg_batch:.2} avg_batch {min_space} min_space",
            norm(pps as f64, a.normalize),
            norm(pkts as f64, a.normalize),
            norm(bps, a.normalize)
        );
    }

    /// Joins the threads; C's tx_output for senders and receivers.
    fn finish(self, a: &Args) -> Result<(), Fail> {
        let mut result = Ok(());
        for t in self.threads {
            let r = t.join().unwrap_or_else(|_| Err("a thread panicked".into()));
            if result.is_ok() {
                result = r;
            }
        }
        let load = |x: &AtomicU64| x.load(Ordering::Relaxed);
        let pkts = self.ctrs.iter().map(|c| load(&c.pkts)).sum::<u64>();
        let bytes = self.ctrs.iter().map(|c| load(&c.bytes)).sum::<u64>();
        let events = self.ctrs.iter().map(|c| load(&c.events)).sum::<u64>();
        // As C: the latest start and the latest end.
        let tic = self.ctrs.iter().map(|c| load(&c.tic)).max().unwrap_or(0);
        let toc = self.ctrs.iter().map(|c| load(&c.toc)).max().unwrap_or(0);
        let delta = toc.saturating_sub(tic) as f64 / 1e9;
        match self.func.role() {
            Role::Sender => tx_output(a, pkts, bytes, events, delta, "Sent"),
            Role::Receiver => tx_output(a, pkts, bytes, events, delta, "Received"),
            Role::Other => {}
        }
        result
    }
}

impl Job {
    fn pin_and_run(&self) -> Result<(), Fail> {
        if let Some(first) = self.a.affinity {
            pin((first + self.me) % cpus(&self.a))?;
        }
        self.run()?;
        Ok(())
    }
}

/// C's tx_output: the two summary lines.
fn tx_output(a: &Args, pkts: u64, bytes: u64, events: u64, delta: f64, msg: &str) {
    if pkts == 0 {
        println!("{msg} nothing.");
        return;
    }
    let size = bytes / pkts;
    println!("{msg} {pkts} packets {bytes} bytes {events} events {size} bytes each in {delta:.2} seconds.");
    let delta = if delta == 0.0 { 1e-6 } else { delta };
    let pps = pkts as f64 / delta;
    let bw = 8.0 * bytes as f64 / delta;
    let raw = (8.0 * bytes as f64 + (pkts * a.framing) as f64) / delta;
    let abs = pkts as f64 / events.max(1) as f64;
    println!(
        "Speed: {}pps Bandwidth: {}bps (raw {}bps). Average batch: {abs:.2} pkts",
        norm(pps, a.normalize),
        norm(bw, a.normalize),
        norm(raw, a.normalize)
    );
}

fn run(a: Args) -> Result<(), Fail> {
    catch_signals()?;
    let a = Arc::new(a);
    let ports = open_ports(&a.ifname, &a)?;
    header(&a.ifname, a.func, &ports, &a);
    let peer_ports = match &a.pair {
        Some(peer) => {
            let ports = open_ports(peer, &a)?;
            header(peer, a.func.peer(), &ports, &a);
            Some(ports)
        }
        None => None,
    };
    if a.wait_link > 0 {
        d!("main", "Wait {} secs for phy reset", a.wait_link);
        let until = Instant::now() + Duration::from_secs(a.wait_link);
        while Instant::now() < until && SIGNAL.load(Ordering::Relaxed) == 0 {
            thread::sleep(Duration::from_millis(10));
        }
        d!("main", "Ready...");
    }
    let deadline = a.duration.map(|d| Instant::now() + d);
    let mut main = Group::new("main_thread", a.func, ports.len());
    let mut groups = Vec::new();
    if let Some(peer_ports) = peer_ports {
        let mut peer = Group::new("peer_thread", a.func.peer(), peer_ports.len());
        main.start(ports, &peer.ctrs, &a, deadline, 0);
        peer.start(peer_ports, &main.ctrs, &a, deadline, main.ctrs.len());
        groups.push(main);
        groups.push(peer);
    } else {
        main.start(ports, &[], &a, deadline, 0);
        groups.push(main);
    }
    // C's main_thread: a line per group each -T, until every thread is done.
    let interval = Duration::from_millis(a.report_ms);
    let mut prev = Instant::now();
    loop {
        let next = prev + interval;
        while Instant::now() < next && !groups.iter().all(Group::done) {
            thread::sleep((next - Instant::now()).min(Duration::from_millis(10)));
        }
        let all_done = groups.iter().all(Group::done);
        let now = Instant::now();
        let usec = (now - prev).as_micros() as u64;
        // Too short to be meaningful, as C says.
        if usec >= 10_000 {
            for g in groups.iter_mut() {
                g.report(usec, &a);
            }
            prev = now;
        }
        if all_done {
            break;
        }
    }
    let sig = SIGNAL.load(Ordering::Relaxed);
    if sig != 0 {
        d!("main", "received signal {sig}, stopped");
    }
    let mut result = Ok(());
    for g in groups {
        let r = g.finish(&a);
        if result.is_ok() {
            result = r;
        }
    }
    result
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args()) {
        Ok(Cmd::Run(a)) => *a,
        Ok(Cmd::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("pkt_gen: {why}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pkt_gen: {e}");
            ExitCode::FAILURE
        }
    }
}
