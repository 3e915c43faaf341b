//! The baseline for the AF_PACKET backend's figures: an ordinary AF_PACKET
//! `SOCK_RAW` socket with one `send(2)` or `recv(2)` per packet, no rings,
//! no netmap-rs. It sends and counts the same frames as `pkt_gen` and prints
//! the same lines, so the two can be run side by side:
//!
//! ```text
//! afpacket_baseline -i IFNAME -f tx|rx [-l LEN] [-n COUNT] [-T SECS]
//! ```
//!
//! It needs CAP_NET_RAW. Send only on interfaces whose traffic you own (a
//! veth pair in a network namespace): `tx` floods broadcast frames.

use std::ffi::CString;
use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use netmap_test_support::packets::ipv4_checksum;

const USAGE: &str = "usage: afpacket_baseline -i IFNAME -f tx|rx [-l LEN] [-n COUNT] [-T SECS]";
/// Ethernet, IPv4 and UDP headers.
const HEADERS: usize = 14 + 20 + 8;

struct Args {
    ifname: String,
    tx: bool,
    len: usize,
    count: u64,
    secs: Option<f64>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        ifname: String::new(),
        tx: true,
        len: 60,
        count: 0,
        secs: None,
    };
    let mut mode = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |what: &str| it.next().ok_or_else(|| format!("{what} needs a value"));
        match arg.as_str() {
            "-i" => a.ifname = val("-i")?,
            "-f" => mode = Some(val("-f")?),
            "-l" => a.len = val("-l")?.parse().map_err(|_| "-l takes a number")?,
            "-n" => a.count = val("-n")?.parse().map_err(|_| "-n takes a number")?,
            "-T" => a.secs = Some(val("-T")?.parse().map_err(|_| "-T takes seconds")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    a.tx = match mode.as_deref() {
        Some("tx") => true,
        Some("rx") => false,
        _ => return Err("-f takes tx or rx".into()),
    };
    if a.ifname.is_empty() {
        return Err("-i is required".into());
    }
    if !(HEADERS + 8..=1514).contains(&a.len) {
        return Err(format!(
            "-l takes a frame length from {} to 1514 bytes",
            HEADERS + 8
        ));
    }
    Ok(a)
}

/// The frame `pkt_gen` sends: IPv4/UDP, 10.0.0.1 -> 10.1.0.1, broadcast MAC.
fn template(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 1, 0, 1,
    ]);
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    let sum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&4321u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    for (i, b) in f[HEADERS..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// A raw packet socket bound to `ifname`, receiving every protocol.
fn open(ifname: &str) -> io::Result<i32> {
    let c = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {ifname}"),
        ));
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket() has no memory preconditions.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_ll is a valid value of the C struct.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: `sll` is a live sockaddr_ll and we pass its size.
    let r = unsafe {
        libc::bind(
            fd,
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn run(a: &Args) -> io::Result<()> {
    let fd = open(&a.ifname)?;
    let what = if a.tx { "tx" } else { "rx" };
    println!(
        "afpacket_baseline: {} (plain SOCK_RAW socket, one {}() per packet)",
        a.ifname,
        if a.tx { "send" } else { "recv" }
    );
    let pkt = template(a.len);
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let deadline = a.secs.map(|s| start + Duration::from_secs_f64(s));
    let (mut pkts, mut bytes) = (0u64, 0u64);
    // When the first and the latest packet went or came: the rates are
    // taken over that span, as pkt_gen's are.
    let (mut first, mut latest) = (None, start);
    let (mut last, mut last_pkts, mut last_bytes) = (start, 0u64, 0u64);
    loop {
        if (a.count > 0 && pkts >= a.count) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let before = pkts;
        // 64 calls between clock reads.
        for _ in 0..64 {
            let r = if a.tx {
                // SAFETY: `pkt` is a live buffer of `pkt.len()` bytes.
                unsafe { libc::send(fd, pkt.as_ptr().cast(), pkt.len(), 0) }
            } else {
                // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
                // A timeout-free blocking recv: the deadline is checked
                // between packets, so `rx` needs traffic to end.
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) }
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                        std::hint::spin_loop();
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            pkts += 1;
            bytes += r as u64;
        }
        if pkts > before {
            latest = Instant::now();
            first.get_or_insert(latest);
        }
        let dt = last.elapsed();
        if dt >= Duration::from_secs(1) {
            let s = dt.as_secs_f64();
            println!(
                "{what} {}: {:>10.0} pps {:>7.3} Gbps ({pkts} total)",
                a.ifname,
                (pkts - last_pkts) as f64 / s,
                (bytes - last_bytes) as f64 * 8.0 / s / 1e9
            );
            (last, last_pkts, last_bytes) = (Instant::now(), pkts, bytes);
        }
    }
    let s = match first {
        Some(f) if latest > f => (latest - f).as_secs_f64(),
        _ => start.elapsed().as_secs_f64(),
    };
    println!(
        "{what} {}: {pkts} packets, {bytes} bytes in {s:.3} s: {:.0} pps {:.3} Gbps",
        a.ifname,
        pkts as f64 / s,
        bytes as f64 * 8.0 / s / 1e9
    );
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    Ok(())
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("afpacket_baseline: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("afpacket_baseline: {}: {e}", a.ifname);
            ExitCode::FAILURE
        }
    }
}
