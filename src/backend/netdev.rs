//! What the kernel says of an interface's XDP, asked over raw netlink with
//! no side effects: the features its driver offers (the generic netlink
//! family `netdev`, Linux 6.3 and later) and the XDP programs attached to it
//! (rtnetlink's `IFLA_XDP`).
//!
//! Each query opens its own socket and sends one request with `NLM_F_ACK`.
//! The kernel answers it with one message and then an `NLMSG_ERROR` of 0, or
//! with an `NLMSG_ERROR` of `-errno` alone, which becomes an [`io::Error`]
//! with that errno. The replies are parsed by pure functions over bytes: a
//! reply that does not parse is [`io::ErrorKind::InvalidData`], never a panic.

use std::ffi::c_int;
use std::io;
use std::mem::{self, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::sys::{cvt, retry};

// Header sizes (include/uapi/linux/netlink.h, genetlink.h, rtnetlink.h).
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
const NLA_HDRLEN: usize = 4;
const IFINFOMSG_LEN: usize = 16;
const _: () = assert!(size_of::<libc::nlmsghdr>() == NLMSG_HDRLEN);
const _: () = assert!(size_of::<libc::genlmsghdr>() == GENL_HDRLEN);
const _: () = assert!(size_of::<libc::nlattr>() == NLA_HDRLEN);

// netlink.h
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// `NLA_TYPE_MASK`: an attribute's type without `NLA_F_NESTED` and
/// `NLA_F_NET_BYTEORDER`.
const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);
// genetlink.h
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
// netdev.h (Linux 6.3; Debian 12's 6.1 headers have none)
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const XDP_ACT_BASIC: u64 = 1;
const XDP_ACT_REDIRECT: u64 = 2;
const XDP_ACT_NDO_XMIT: u64 = 4;
const XDP_ACT_XSK_ZEROCOPY: u64 = 8;
const XDP_ACT_HW_OFFLOAD: u64 = 16;
const XDP_ACT_RX_SG: u64 = 32;
const XDP_ACT_NDO_XMIT_SG: u64 = 64;
// rtnetlink.h, if_link.h
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const XDP_ATTACHED_NONE: u8 = 0;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;

/// How long a query waits for the kernel's answer: `SO_RCVTIMEO`, and the
/// limit on the whole exchange should unrelated messages keep arriving.
const TIMEOUT: Duration = Duration::from_secs(1);
/// The receive buffer; a datagram larger than this is an error.
const RECV_BUF: usize = 32 * 1024;

/// What an interface's driver offers XDP (netdev family's xdp-features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XdpFeatures {
    /// The `NETDEV_XDP_ACT_*` bits as the kernel sent them, unknown ones kept.
    pub(crate) bits: u64,
}

impl XdpFeatures {
    /// `NETDEV_XDP_ACT_BASIC`: the driver runs XDP programs itself (native
    /// mode), with `XDP_ABORTED`, `XDP_DROP`, `XDP_PASS` and `XDP_TX`.
    pub(crate) fn native(self) -> bool {
        self.bits & XDP_ACT_BASIC != 0
    }

    /// `NETDEV_XDP_ACT_REDIRECT`: native programs may `XDP_REDIRECT`, which
    /// is how frames reach an AF_XDP socket.
    pub(crate) fn redirect(self) -> bool {
        self.bits & XDP_ACT_REDIRECT != 0
    }

    /// `NETDEV_XDP_ACT_XSK_ZEROCOPY`: AF_XDP sockets may bind in zero-copy mode.
    pub(crate) fn zero_copy(self) -> bool {
        self.bits & XDP_ACT_XSK_ZEROCOPY != 0
    }

    /// The names of the bits set, as `ynl` and the kernel's spec spell
    /// them (`basic`, `redirect`, ...).
    pub(crate) fn names(self) -> Vec<&'static str> {
        let all = [
            (XDP_ACT_BASIC, "basic"),
            (XDP_ACT_REDIRECT, "redirect"),
            (XDP_ACT_NDO_XMIT, "ndo-xmit"),
            (XDP_ACT_XSK_ZEROCOPY, "xsk-zerocopy"),
            (XDP_ACT_HW_OFFLOAD, "hw-offload"),
            (XDP_ACT_RX_SG, "rx-sg"),
            (XDP_ACT_NDO_XMIT_SG, "ndo-xmit-sg"),
        ];
        all.iter().filter(|b| self.bits & b.0 != 0).map(|b| b.1).collect()
    }
}

/// Where an XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XdpMode {
    /// In the driver (`XDP_ATTACHED_DRV`).
    Native,
    /// In the core stack, after the driver built an skb (`XDP_ATTACHED_SKB`).
    Generic,
    /// On the NIC (`XDP_ATTACHED_HW`).
    Offload,
}

/// An XDP program attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttachedProg {
    /// Where it runs.
    pub(crate) mode: XdpMode,
    /// Its BPF program id.
    pub(crate) id: u32,
}

/// The XDP features of interface `ifindex`: `NETDEV_CMD_DEV_GET` of the
/// generic netlink family `netdev`. An unknown `ifindex` is `ENODEV`.
///
/// `Ok(None)`: the kernel has no netdev family (before 6.3), so nobody can say.
pub(crate) fn xdp_features(ifindex: u32) -> io::Result<Option<XdpFeatures>> {
    let mut sock = Socket::open(libc::NETLINK_GENERIC)?;
    let mut body = vec![CTRL_CMD_GETFAMILY, 1, 0, 0];
    push_attr(&mut body, CTRL_ATTR_FAMILY_NAME, b"netdev\0");
    let family = match sock.transact(GENL_ID_CTRL, &body, GENL_ID_CTRL) {
        Ok(answer) => parse_family_id(&answer)?,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut body = vec![NETDEV_CMD_DEV_GET, 1, 0, 0];
    push_attr(&mut body, NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes());
    parse_xdp_features(&sock.transact(family, &body, family)?).map(Some)
}

/// Every XDP program attached to the interface (one per mode; empty when none).
///
/// `RTM_GETLINK` of `ifindex`; an unknown `ifindex` is `ENODEV`.
pub(crate) fn xdp_attached(ifindex: u32) -> io::Result<Vec<AttachedProg>> {
    let mut sock = Socket::open(libc::NETLINK_ROUTE)?;
    // ifinfomsg: AF_UNSPEC, pad, any type, the index, no flags, no change mask.
    let mut body = vec![0; 4];
    body.extend_from_slice(&ifindex.to_ne_bytes());
    body.resize(IFINFOMSG_LEN, 0);
    parse_link_xdp(&sock.transact(RTM_GETLINK, &body, RTM_NEWLINK)?)
}

/// A netlink socket, bound to the port the kernel chose for it.
#[derive(Debug)]
struct Socket {
    fd: OwnedFd,
    portid: u32,
    seq: u32,
}

/// A `sockaddr_nl` of port 0: the kernel's, or "any" when binding.
fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl holds integers only, for which all zeroes is a value.
    let mut a: libc::sockaddr_nl = unsafe { mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a
}

const ADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_nl>() as libc::socklen_t;

impl Socket {
    fn open(protocol: c_int) -> io::Result<Socket> {
        // SAFETY: socket(2) takes no pointers.
        let fd =
            cvt(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) })?;
        // SAFETY: `fd` was just opened and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        let tv_len = size_of::<libc::timeval>() as libc::socklen_t;
        let tv_ptr = (&raw const tv).cast();
        let (raw, level, opt) = (fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO);
        // SAFETY: the option value is a live timeval of the length given.
        cvt(unsafe { libc::setsockopt(raw, level, opt, tv_ptr, tv_len) })?;
        let mut addr = kernel_addr();
        // SAFETY: `addr` is a live sockaddr_nl of ADDR_LEN bytes.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), ADDR_LEN) })?;
        let mut len = ADDR_LEN;
        // SAFETY: `addr` is a live, writable sockaddr_nl of `len` bytes.
        cvt(unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &mut len) })?;
        Ok(Socket {
            fd,
            portid: addr.nl_pid,
            seq: 0,
        })
    }

    /// Sends a request of type `ty` with `body` (its family's header and
    /// attributes) and returns the payload of the `want` message answering it.
    fn transact(&mut self, ty: u16, body: &[u8], want: u16) -> io::Result<Vec<u8>> {
        self.seq = self.seq.wrapping_add(1);
        let msg = message(ty, NLM_F_REQUEST | NLM_F_ACK, self.seq, 0, body);
        let dst = kernel_addr();
        let fd = self.fd.as_raw_fd();
        let (m, m_len, d) = (msg.as_ptr().cast(), msg.len(), (&raw const dst).cast());
        // SAFETY: `msg` and `dst` are live for the call, of the lengths given.
        retry(|| cvt(unsafe { libc::sendto(fd, m, m_len, 0, d, ADDR_LEN) }))?;
        let mut buf = vec![0u8; RECV_BUF];
        let mut answer = None;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            let mut src = kernel_addr();
            let mut src_len = ADDR_LEN;
            // SAFETY: `buf` (of the length given), `src` and `src_len` are
            // live and writable; MSG_TRUNC only changes what is returned.
            let n = unsafe {
                let (b, l, s) = (buf.as_mut_ptr().cast(), buf.len(), (&raw mut src).cast());
                libc::recvfrom(fd, b, l, libc::MSG_TRUNC, s, &mut src_len)
            };
            let n = match cvt(n) {
                Ok(n) => n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(timed_out()),
                Err(e) => return Err(e),
            };
            if n > buf.len() {
                return Err(invalid("a datagram larger than the 32 KiB buffer"));
            }
            if src.nl_pid != 0 {
                continue; // not from the kernel
            }
            if let Some(a) = absorb(&buf[..n], self.seq, self.portid, want, &mut answer)? {
                return Ok(a);
            }
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "netlink: the kernel did not answer")
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"))
}

/// A netlink message: header `ty`, `flags`, `seq` and `pid`, then `body`,
/// padded to NLMSG_ALIGN.
fn message(ty: u16, flags: u16, seq: u32, pid: u32, body: &[u8]) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + body.len()) as u32;
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&pid.to_ne_bytes());
    m.extend_from_slice(body);
    m.resize(align(m.len()), 0);
    m
}

/// Appends attribute `ty` with `payload`, padded to NLA_ALIGN.
fn push_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&((NLA_HDRLEN + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align(buf.len()), 0);
}

/// NLMSG_ALIGN and NLA_ALIGN (both 4); `n` is at most a buffer's length.
fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An attribute payload of exactly `N` bytes.
fn exact<const N: usize>(p: &[u8]) -> io::Result<[u8; N]> {
    p.try_into()
        .map_err(|_| invalid("an attribute of the wrong size"))
}

/// The attributes of `rest` as (type without flags, payload); one whose
/// length is shorter than its header or runs past `rest` is InvalidData.
fn attrs(mut rest: &[u8]) -> io::Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, ty) = u16_at(rest, 0)
            .zip(u16_at(rest, 2))
            .ok_or_else(|| invalid("a truncated attribute"))?;
        let len = usize::from(len);
        let payload = rest
            .get(NLA_HDRLEN..len)
            .ok_or_else(|| invalid("an attribute length out of bounds"))?;
        out.push((ty & NLA_TYPE_MASK, payload));
        rest = rest.get(align(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The payload of the first attribute `ty` of `buf`.
fn find(buf: &[u8], ty: u16) -> io::Result<Option<&[u8]>> {
    Ok(attrs(buf)?.into_iter().find(|a| a.0 == ty).map(|a| a.1))
}

/// Takes in one datagram of the kernel's answer to request `seq` from port
/// `portid` (the kernel's answers carry the requester's port in `nlmsg_pid`;
/// the sender address, port 0, is what says they come from it), keeping the `want` message in `answer`: `Some` of its payload
/// once the ack arrived, `None` while it has not; an `NLMSG_ERROR` of
/// `-errno` is that errno. Messages for another request are skipped; one
/// whose length is shorter than its header or runs past the datagram is
/// InvalidData.
fn absorb(
    mut rest: &[u8],
    seq: u32,
    portid: u32,
    want: u16,
    answer: &mut Option<Vec<u8>>,
) -> io::Result<Option<Vec<u8>>> {
    while !rest.is_empty() {
        let header = || {
            Some((
                u32_at(rest, 0)?,
                u16_at(rest, 4)?,
                u32_at(rest, 8)?,
                u32_at(rest, 12)?,
            ))
        };
        let (len, ty, m_seq, m_pid) = header().ok_or_else(|| invalid("a truncated message header"))?;
        let len = len as usize;
        let payload = rest
            .get(NLMSG_HDRLEN..len)
            .ok_or_else(|| invalid("a message length out of bounds"))?;
        rest = rest.get(align(len)..).unwrap_or(&[]);
        if m_seq != seq || m_pid != portid {
            continue;
        }
        if ty == NLMSG_ERROR {
            // struct nlmsgerr: the error, then the request's header.
            return match u32_at(payload, 0).map(|e| e as i32) {
                None => Err(invalid("a truncated NLMSG_ERROR")),
                Some(0) => Ok(Some(
                    answer.take().ok_or_else(|| invalid("an ack without an answer"))?,
                )),
                Some(e) if (-4095..0).contains(&e) => Err(io::Error::from_raw_os_error(-e)),
                Some(_) => Err(invalid("an NLMSG_ERROR out of range")),
            };
        }
        if ty == want && answer.replace(payload.to_vec()).is_some() {
            return Err(invalid("two answers to one request"));
        }
    }
    Ok(None)
}

/// Attribute `ty` of a generic netlink answer (after its genlmsghdr).
fn genl_attr(answer: &[u8], ty: u16) -> io::Result<&[u8]> {
    let attrs = answer
        .get(GENL_HDRLEN..)
        .ok_or_else(|| invalid("a truncated genetlink header"))?;
    find(attrs, ty)?.ok_or_else(|| invalid("an answer without an expected attribute"))
}

/// CTRL_ATTR_FAMILY_ID of a CTRL_CMD_GETFAMILY answer.
fn parse_family_id(answer: &[u8]) -> io::Result<u16> {
    Ok(u16::from_ne_bytes(exact(genl_attr(
        answer,
        CTRL_ATTR_FAMILY_ID,
    )?)?))
}

/// NETDEV_A_DEV_XDP_FEATURES of a NETDEV_CMD_DEV_GET answer.
fn parse_xdp_features(answer: &[u8]) -> io::Result<XdpFeatures> {
    let bits = u64::from_ne_bytes(exact(genl_attr(answer, NETDEV_A_DEV_XDP_FEATURES)?)?);
    Ok(XdpFeatures { bits })
}

/// The programs that the IFLA_XDP nest of an RTM_NEWLINK answer lists.
///
/// The kernel gives each attached program's id per mode, and the mode
/// (MULTI for more than one); kernels before 4.19 gave the mode and one
/// IFLA_XDP_PROG_ID only.
fn parse_link_xdp(answer: &[u8]) -> io::Result<Vec<AttachedProg>> {
    let attrs_at = answer
        .get(IFINFOMSG_LEN..)
        .ok_or_else(|| invalid("a truncated ifinfomsg"))?;
    let Some(xdp) = find(attrs_at, IFLA_XDP)? else {
        return Ok(Vec::new());
    };
    let (mut attached, mut prog_id, mut progs) = (None, None, Vec::new());
    for (ty, p) in attrs(xdp)? {
        let mode = match ty {
            IFLA_XDP_ATTACHED => {
                attached = Some(u8::from_ne_bytes(exact(p)?));
                continue;
            }
            IFLA_XDP_PROG_ID => {
                prog_id = Some(u32::from_ne_bytes(exact(p)?));
                continue;
            }
            IFLA_XDP_DRV_PROG_ID => XdpMode::Native,
            IFLA_XDP_SKB_PROG_ID => XdpMode::Generic,
            IFLA_XDP_HW_PROG_ID => XdpMode::Offload,
            _ => continue,
        };
        progs.push(AttachedProg {
            mode,
            id: u32::from_ne_bytes(exact(p)?),
        });
    }
    let single = |mode| match (progs.is_empty(), prog_id) {
        (true, Some(id)) => Ok(vec![AttachedProg { mode, id }]),
        (false, _) => Ok(progs.clone()),
        (true, None) => Err(invalid("an attached XDP program without an id")),
    };
    let mut out = match attached {
        None | Some(XDP_ATTACHED_NONE) if progs.is_empty() => Vec::new(),
        Some(XDP_ATTACHED_DRV) => single(XdpMode::Native)?,
        Some(XDP_ATTACHED_SKB) => single(XdpMode::Generic)?,
        Some(XDP_ATTACHED_HW) => single(XdpMode::Offload)?,
        Some(XDP_ATTACHED_MULTI) if !progs.is_empty() => progs,
        _ => return Err(invalid("an inconsistent IFLA_XDP")),
    };
    out.sort_by_key(|p| p.mode as u8);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: u32 = 4242;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        push_attr(&mut b, ty, payload);
        b
    }

    fn ack(seq: u32, code: i32) -> Vec<u8> {
        let mut p = code.to_ne_bytes().to_vec();
        p.extend_from_slice(&message(GENL_ID_CTRL, NLM_F_REQUEST, seq, 0, &[])); // the request echoed
        message(NLMSG_ERROR, 0, seq, PORT, &p)
    }

    /// A NETDEV_CMD_DEV_GET answer: ifindex, the pad attribute that
    /// architectures without fast unaligned access get before a u64,
    /// xdp-features and zc-max-segs (sent for zero-copy drivers).
    fn features_answer(bits: u64) -> Vec<u8> {
        let mut p = vec![NETDEV_CMD_DEV_GET, 1, 0, 0];
        p.extend(attr(NETDEV_A_DEV_IFINDEX, &7u32.to_ne_bytes()));
        p.extend(attr(2, &[]));
        p.extend(attr(NETDEV_A_DEV_XDP_FEATURES, &bits.to_ne_bytes()));
        p.extend(attr(4, &1u32.to_ne_bytes()));
        p
    }

    /// An RTM_NEWLINK answer: ifinfomsg, IFLA_IFNAME, the IFLA_XDP nest of
    /// `xdp`, IFLA_MTU.
    fn link_answer(xdp: &[u8], nest_flag: u16) -> Vec<u8> {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p.extend(attr(3, b"veth0\0"));
        p.extend(attr(IFLA_XDP | nest_flag, xdp));
        p.extend(attr(4, &1500u32.to_ne_bytes()));
        p
    }

    fn at(mode: XdpMode, id: u32) -> AttachedProg {
        AttachedProg { mode, id }
    }

    fn is_invalid<T: std::fmt::Debug>(r: io::Result<T>) -> bool {
        matches!(r, Err(ref e) if e.kind() == io::ErrorKind::InvalidData)
    }

    #[test]
    fn family_answer_then_ack() {
        let mut p = vec![1, 2, 0, 0];
        p.extend(attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0"));
        p.extend(attr(CTRL_ATTR_FAMILY_ID, &0x1au16.to_ne_bytes()));
        let mut answer = None;
        let first = message(GENL_ID_CTRL, 0, 5, PORT, &p);
        assert_eq!(absorb(&first, 5, PORT, GENL_ID_CTRL, &mut answer).unwrap(), None);
        let got = absorb(&ack(5, 0), 5, PORT, GENL_ID_CTRL, &mut answer)
            .unwrap()
            .unwrap();
        assert_eq!(parse_family_id(&got).unwrap(), 0x1a);
    }

    #[test]
    fn answer_and_ack_in_one_datagram_skipping_others() {
        let a = features_answer(XDP_ACT_BASIC | XDP_ACT_REDIRECT | XDP_ACT_RX_SG);
        let mut d = message(0x20, 0, 4, PORT, b"stale");
        d.extend(message(0x20, 0, 5, PORT + 1, b"another port's"));
        d.extend(message(0x20, 0, 5, PORT, &a));
        d.extend(ack(5, 0));
        let got = absorb(&d, 5, PORT, 0x20, &mut None).unwrap().unwrap();
        let f = parse_xdp_features(&got).unwrap();
        assert!(f.native() && f.redirect() && !f.zero_copy());
        assert_eq!(f.bits, 0x23);
    }

    #[test]
    fn nlmsg_error() {
        let e = absorb(&ack(9, -libc::ENODEV), 9, PORT, 0x20, &mut None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        assert!(
            is_invalid(absorb(&ack(9, 0), 9, PORT, 0x20, &mut None)),
            "an ack without an answer"
        );
        assert!(is_invalid(absorb(&ack(9, 3), 9, PORT, 0x20, &mut None)));
        assert!(is_invalid(absorb(&ack(9, i32::MIN), 9, PORT, 0x20, &mut None)));
        let short = message(NLMSG_ERROR, 0, 9, PORT, &[0, 0]);
        assert!(is_invalid(absorb(&short, 9, PORT, 0x20, &mut None)));
        let twice = [message(0x20, 0, 9, PORT, &[]), message(0x20, 0, 9, PORT, &[])].concat();
        assert!(is_invalid(absorb(&twice, 9, PORT, 0x20, &mut None)));
    }

    #[test]
    fn truncated_and_lying_lengths() {
        let d = [message(0x20, 0, 1, PORT, &features_answer(1)), ack(1, 0)].concat();
        let first_len = NLMSG_HDRLEN + features_answer(1).len();
        for cut in 1..d.len() {
            let r = absorb(&d[..cut], 1, PORT, 0x20, &mut None);
            assert_eq!(is_invalid(r), cut != first_len, "cut at {cut}");
        }
        for cut in 0..features_answer(1).len() {
            let _ = parse_xdp_features(&features_answer(1)[..cut]); // must not panic
        }
        for lie in [0u32, 15, d.len() as u32 + 4, u32::MAX] {
            let mut bad = d.clone();
            bad[..4].copy_from_slice(&lie.to_ne_bytes());
            assert!(
                is_invalid(absorb(&bad, 1, PORT, 0x20, &mut None)),
                "nlmsg_len {lie}"
            );
        }
        let mut a = features_answer(1);
        for lie in [0u16, 3, 200, u16::MAX] {
            a[4..6].copy_from_slice(&lie.to_ne_bytes());
            assert!(is_invalid(parse_xdp_features(&a)), "nla_len {lie}");
        }
        let mut wrong_size = vec![0; 4];
        wrong_size.extend(attr(NETDEV_A_DEV_XDP_FEATURES, &1u32.to_ne_bytes()));
        assert!(is_invalid(parse_xdp_features(&wrong_size)));
        assert!(is_invalid(parse_xdp_features(&[0; 4])), "no xdp-features");
    }

    #[test]
    fn nested_ifla_xdp() {
        let prog = |ty: u16, id: u32| attr(ty, &id.to_ne_bytes());
        let multi = [
            attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_MULTI]),
            prog(IFLA_XDP_SKB_PROG_ID, 7),
            prog(IFLA_XDP_DRV_PROG_ID, 9),
        ]
        .concat();
        let want = [at(XdpMode::Native, 9), at(XdpMode::Generic, 7)];
        assert_eq!(parse_link_xdp(&link_answer(&multi, 0)).unwrap(), want);
        assert_eq!(
            parse_link_xdp(&link_answer(&multi, 1 << 15)).unwrap(),
            want,
            "NLA_F_NESTED"
        );
        let one = [
            attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_HW]),
            prog(IFLA_XDP_HW_PROG_ID, 3),
            prog(IFLA_XDP_PROG_ID, 3),
        ];
        assert_eq!(
            parse_link_xdp(&link_answer(&one.concat(), 0)).unwrap(),
            [at(XdpMode::Offload, 3)]
        );
        let old = [
            attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_SKB]),
            prog(IFLA_XDP_PROG_ID, 5),
        ]
        .concat();
        let generic = [at(XdpMode::Generic, 5)];
        assert_eq!(
            parse_link_xdp(&link_answer(&old, 0)).unwrap(),
            generic,
            "before 4.19"
        );
        let none = attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_NONE]);
        assert_eq!(parse_link_xdp(&link_answer(&none, 0)).unwrap(), []);
        assert_eq!(parse_link_xdp(&[0; IFINFOMSG_LEN]).unwrap(), [], "no IFLA_XDP");
        for bad in [
            attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_DRV]),
            attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_MULTI]),
            attr(IFLA_XDP_ATTACHED, &[9]),
            attr(IFLA_XDP_ATTACHED, &[1, 0]),
            [none.clone(), prog(IFLA_XDP_DRV_PROG_ID, 1)].concat(),
            [
                attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_DRV]),
                attr(IFLA_XDP_DRV_PROG_ID, &[1]),
            ]
            .concat(),
        ] {
            assert!(is_invalid(parse_link_xdp(&link_answer(&bad, 0))), "{bad:?}");
        }
        let mut lying = link_answer(&multi, 0);
        let nested_at = IFINFOMSG_LEN + 12 + NLA_HDRLEN; // after IFLA_IFNAME and the nest's header
        lying[nested_at..nested_at + 2].copy_from_slice(&200u16.to_ne_bytes());
        assert!(is_invalid(parse_link_xdp(&lying)));
        assert!(is_invalid(parse_link_xdp(&[0; 15])));
    }

    #[test]
    fn garbage_never_panics() {
        let link = link_answer(&[attr(IFLA_XDP_ATTACHED, &[1]), attr(5, &[1; 4])].concat(), 0);
        let good = [message(0x20, 0, 1, PORT, &link), ack(1, 0)].concat();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut d = good.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize >> 8) % d.len();
                d[at] = x as u8;
            }
            if let Ok(Some(a)) = absorb(&d, 1, PORT, 0x20, &mut None) {
                let _ = (parse_link_xdp(&a), parse_xdp_features(&a), parse_family_id(&a));
            }
        }
    }

    #[test]
    fn live_lo_and_unknown_ifindex() {
        let Some(lo) = xdp_features(1).unwrap() else {
            netmap_test_support::skip::skip(
                "live_lo_and_unknown_ifindex",
                "this kernel has no netdev netlink family (Linux 6.3 brought it)",
            );
            return;
        };
        eprintln!("lo: xdp-features {:#x} {:?}", lo.bits, lo.names());
        assert_eq!(xdp_attached(1).unwrap(), []);
        let (e1, e2) = (
            xdp_features(999_999).unwrap_err(),
            xdp_attached(999_999).unwrap_err(),
        );
        for e in [e1, e2] {
            assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
        }
    }

    fn ip(args: &[&str]) -> bool {
        let out = std::process::Command::new("ip").args(args).output();
        out.is_ok_and(|o| o.status.success())
    }

    /// A veth pair in a network namespace of its own, queried from a thread
    /// that entered it; skipped where namespaces cannot be made.
    #[test]
    fn live_veth_in_own_netns() {
        struct Netns(String);
        impl Drop for Netns {
            fn drop(&mut self) {
                if !ip(&["netns", "del", &self.0]) {
                    eprintln!("could not remove network namespace {}", self.0);
                }
            }
        }
        let name = format!("netmap-rs-netdev-{}", std::process::id());
        if !ip(&["netns", "add", &name]) {
            eprintln!("skipped: cannot create a network namespace");
            return;
        }
        let ns = Netns(name);
        let veth = format!("-n {} link add veth0 type veth peer name veth1", ns.0);
        assert!(ip(&veth.split(' ').collect::<Vec<_>>()), "ip {veth}");
        let path = format!("/run/netns/{}", ns.0);
        let (features, attached) = std::thread::spawn(move || {
            let f = std::fs::File::open(path).unwrap();
            // SAFETY: `f` is an open network namespace; setns moves only this
            // thread, which ends here, into it.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            // SAFETY: the name is a NUL-terminated string.
            let ifindex = unsafe { libc::if_nametoindex(c"veth0".as_ptr()) };
            assert_ne!(ifindex, 0, "veth0 in the namespace");
            let features = xdp_features(ifindex).unwrap().unwrap();
            (features, xdp_attached(ifindex).unwrap())
        })
        .join()
        .unwrap();
        eprintln!("veth: xdp-features {:#x} {:?}", features.bits, features.names());
        assert!(features.native() && features.redirect(), "{features:?}");
        assert_eq!(attached, []);
    }
}
