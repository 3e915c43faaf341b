//! Linux's AF_XDP and bpf(2) ABI, as `<linux/if_xdp.h>` and
//! `<linux/bpf.h>` declare it, and the system calls this backend makes.
//!
//! Every struct's size and field offsets are asserted at compile time
//! against the kernel headers' layout.

use std::ffi::{c_int, c_void};
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use crate::backend::sys::cvt;

pub(super) const AF_XDP: c_int = 44;
pub(super) const SOL_XDP: c_int = 283;

// `bind` flags (`sockaddr_xdp.sxdp_flags`).
pub(super) const XDP_SHARED_UMEM: u16 = 1 << 0;
pub(super) const XDP_COPY: u16 = 1 << 1;
pub(super) const XDP_ZEROCOPY: u16 = 1 << 2;
pub(super) const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;

/// A ring's `flags` word: the kernel wants a system call to make progress.
pub(super) const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

// Socket options at `SOL_XDP`.
pub(super) const XDP_MMAP_OFFSETS: c_int = 1;
pub(super) const XDP_RX_RING: c_int = 2;
pub(super) const XDP_TX_RING: c_int = 3;
pub(super) const XDP_UMEM_REG: c_int = 4;
pub(super) const XDP_UMEM_FILL_RING: c_int = 5;
pub(super) const XDP_UMEM_COMPLETION_RING: c_int = 6;
pub(super) const XDP_OPTIONS: c_int = 8;
/// Frames copy mode sends per `sendto` (Linux 6.17 on; 32 before, and by
/// default), from 32 to the TX ring's size.
pub(super) const XDP_MAX_TX_SKB_BUDGET: c_int = 9;
pub(super) const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;

// `mmap` offsets of the four rings.
pub(super) const XDP_PGOFF_RX_RING: i64 = 0;
pub(super) const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
pub(super) const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
pub(super) const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;

/// Room the kernel keeps before a received packet in its chunk
/// (`XDP_PACKET_HEADROOM`); a packet starts at least this far in.
pub(super) const XDP_PACKET_HEADROOM: usize = 256;

// bpf(2) commands, types and constants.
pub(super) const BPF_MAP_CREATE: c_int = 0;
pub(super) const BPF_MAP_UPDATE_ELEM: c_int = 2;
pub(super) const BPF_PROG_LOAD: c_int = 5;
pub(super) const BPF_LINK_CREATE: c_int = 28;
pub(super) const BPF_MAP_TYPE_XSKMAP: u32 = 17;
pub(super) const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`'s `BPF_XDP`.
pub(super) const BPF_XDP: u32 = 37;
pub(super) const BPF_ANY: u64 = 0;
// `XDP_FLAGS_*` of a link's attach flags.
pub(super) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(super) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SockaddrXdp {
    pub(super) sxdp_family: u16,
    pub(super) sxdp_flags: u16,
    pub(super) sxdp_ifindex: u32,
    pub(super) sxdp_queue_id: u32,
    pub(super) sxdp_shared_umem_fd: u32,
}

/// `struct xdp_ring_offset`: where a ring's words and descriptors lie in
/// its mapping.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct XdpRingOffset {
    pub(super) producer: u64,
    pub(super) consumer: u64,
    pub(super) desc: u64,
    pub(super) flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct XdpMmapOffsets {
    pub(super) rx: XdpRingOffset,
    pub(super) tx: XdpRingOffset,
    pub(super) fr: XdpRingOffset,
    pub(super) cr: XdpRingOffset,
}

/// `struct xdp_umem_reg` (with `flags`; the kernel takes this size from
/// 5.4 on, and reads `tx_metadata_len`, zero here, where it has one).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct XdpUmemReg {
    pub(super) addr: u64,
    pub(super) len: u64,
    pub(super) chunk_size: u32,
    pub(super) headroom: u32,
    pub(super) flags: u32,
    pub(super) tx_metadata_len: u32,
}

/// `struct xdp_desc`: an RX or TX descriptor.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct XdpDesc {
    pub(super) addr: u64,
    pub(super) len: u32,
    pub(super) options: u32,
}

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct BpfInsn {
    pub(super) code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high one.
    pub(super) regs: u8,
    pub(super) off: i16,
    pub(super) imm: i32,
}

/// The `BPF_MAP_CREATE` part of `union bpf_attr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MapCreateAttr {
    pub(super) map_type: u32,
    pub(super) key_size: u32,
    pub(super) value_size: u32,
    pub(super) max_entries: u32,
    pub(super) map_flags: u32,
    pub(super) inner_map_fd: u32,
    pub(super) numa_node: u32,
    pub(super) map_name: [u8; 16],
}

/// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MapElemAttr {
    pub(super) map_fd: u32,
    pub(super) _pad: u32,
    pub(super) key: u64,
    pub(super) value: u64,
    pub(super) flags: u64,
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ProgLoadAttr {
    pub(super) prog_type: u32,
    pub(super) insn_cnt: u32,
    pub(super) insns: u64,
    pub(super) license: u64,
    pub(super) log_level: u32,
    pub(super) log_size: u32,
    pub(super) log_buf: u64,
    pub(super) kern_version: u32,
    pub(super) prog_flags: u32,
    pub(super) prog_name: [u8; 16],
    pub(super) prog_ifindex: u32,
    pub(super) expected_attach_type: u32,
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr`, for XDP.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LinkCreateAttr {
    pub(super) prog_fd: u32,
    pub(super) target_ifindex: u32,
    pub(super) attach_type: u32,
    pub(super) flags: u32,
}

const _: () = assert!(size_of::<SockaddrXdp>() == 16 && offset_of!(SockaddrXdp, sxdp_shared_umem_fd) == 12);
const _: () = assert!(size_of::<XdpRingOffset>() == 32 && size_of::<XdpMmapOffsets>() == 128);
const _: () = assert!(offset_of!(XdpMmapOffsets, fr) == 64 && offset_of!(XdpMmapOffsets, cr) == 96);
const _: () = assert!(size_of::<XdpUmemReg>() == 32 && offset_of!(XdpUmemReg, flags) == 24);
const _: () = assert!(size_of::<XdpDesc>() == 16 && offset_of!(XdpDesc, len) == 8);
const _: () = assert!(size_of::<BpfInsn>() == 8);
const _: () = assert!(offset_of!(MapCreateAttr, map_name) == 28);
const _: () = assert!(offset_of!(MapElemAttr, key) == 8 && offset_of!(MapElemAttr, flags) == 24);
const _: () = assert!(
    offset_of!(ProgLoadAttr, prog_name) == 48 && offset_of!(ProgLoadAttr, expected_attach_type) == 68
);
const _: () = assert!(offset_of!(LinkCreateAttr, attach_type) == 8 && size_of::<LinkCreateAttr>() == 16);

/// A new AF_XDP socket, owned; `EAFNOSUPPORT` on a kernel without AF_XDP.
pub(super) fn xdp_socket() -> io::Result<OwnedFd> {
    // SAFETY: `socket` has no memory preconditions; the result is checked.
    let fd = cvt(unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just opened and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn setsockopt<T: Copy>(fd: BorrowedFd<'_>, name: c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of `size_of::<T>()` readable bytes, the
    // argument type the option expects (each caller passes the C type).
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            name,
            ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(SOL_XDP, name)` into a `T`; `EINVAL` if the kernel answers
/// with fewer bytes than `T` has.
pub(super) fn getsockopt<T: Copy + Default>(fd: BorrowedFd<'_>, name: c_int) -> io::Result<T> {
    let mut v = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and writable, `len` says `v`'s size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            name,
            ptr::addr_of_mut!(v).cast(),
            &mut len,
        )
    })?;
    if (len as usize) < size_of::<T>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(v)
}

pub(super) fn bind(fd: BorrowedFd<'_>, addr: &SockaddrXdp) -> io::Result<()> {
    // SAFETY: `addr` is a live sockaddr_xdp and we pass its size.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            ptr::from_ref(addr).cast(),
            size_of::<SockaddrXdp>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`: the kernel sends what the
/// TX ring holds (in copy mode at most a budget of frames per call, then
/// `EAGAIN`).
pub(super) fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length send with a null buffer and no address; the
    // kernel reads the frames from the TX ring.
    cvt(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            ptr::null::<c_void>(),
            0,
            libc::MSG_DONTWAIT,
            ptr::null(),
            0,
        )
    })
    .map(drop)
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`: wakes a driver that asked for it
/// (`XDP_RING_NEED_WAKEUP` on the fill ring) to refill its RX queue.
pub(super) fn kick_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length receive into a null buffer, no address.
    cvt(unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            ptr::null_mut::<c_void>(),
            0,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    })
    .map(drop)
}

/// `bpf(cmd, attr, sizeof *attr)`; a descriptor the call returns is the
/// caller's to wrap.
fn bpf<T: Copy>(cmd: c_int, attr: &mut T) -> io::Result<c_int> {
    // SAFETY: `attr` is a live, writable `repr(C)` prefix of `union
    // bpf_attr` for `cmd`, and we pass its size; the kernel zero-extends
    // shorter attrs and reads no further. Pointers inside it point at live
    // memory of the sizes they state (each caller's duty, checked there).
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, ptr::from_mut(attr), size_of::<T>()) };
    cvt(r).map(|r| r as c_int)
}

fn owned(fd: c_int) -> OwnedFd {
    // SAFETY: `fd` is a descriptor bpf(2) just returned, owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// An XSKMAP of `entries` slots, keyed by RX queue.
pub(super) fn xskmap_create(entries: u32) -> io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"netmap_rs");
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_name: name,
        ..MapCreateAttr::default()
    };
    bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// Sets entry `key` of `map` to the socket `fd`.
pub(super) fn map_update(map: BorrowedFd<'_>, key: u32, fd: BorrowedFd<'_>) -> io::Result<()> {
    let value = fd.as_raw_fd() as u32;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: ptr::addr_of!(key) as u64,
        value: ptr::addr_of!(value) as u64,
        flags: BPF_ANY,
        ..MapElemAttr::default()
    };
    // `key` and `value` are live u32s, the sizes the map was made with.
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Loads the XDP program `insns`; on a verifier refusal the error's text
/// carries the verifier's log.
pub(super) fn prog_load(insns: &[BpfInsn], license: &std::ffi::CStr) -> io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"netmap_rs");
    let mut log = vec![0u8; 4096];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    // `insns`, `license` (NUL-terminated) are live for the call.
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) => {
            // Load again with the verifier's log, to say why.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            match bpf(BPF_PROG_LOAD, &mut attr) {
                Ok(fd) => Ok(owned(fd)),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    Err(io::Error::new(
                        e.kind(),
                        format!("{e}; verifier: {}", text.trim()),
                    ))
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// Attaches `prog` to interface `ifindex` as its XDP program in the mode
/// `flags` says, as a BPF link: the kernel detaches it when the link's last
/// descriptor closes (also when the process dies), and refuses (`EBUSY`,
/// `EEXIST`) where another program is attached.
pub(super) fn link_create(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    bpf(BPF_LINK_CREATE, &mut attr).map(owned)
}
