//! The XDP program that steers an interface's packets to this process's
//! AF_XDP sockets, and the process-wide registry of where it is attached.
//!
//! One program and one `XSKMAP` per interface serve every port of the
//! process on it: a port puts its sockets into the map at their queues and
//! takes them out when it closes; the program goes away with the last port
//! (its BPF link's last descriptor), and the kernel detaches it if the
//! process dies.

use std::collections::HashMap;
use std::ffi::{c_int, CStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::sys::{
    link_create, map_update, prog_load, xskmap_create, BpfInsn, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE,
};
use crate::backend::lock;

/// Entries of the `XSKMAP`: RX queues a port can bind on one interface.
pub(super) const MAP_ENTRIES: u32 = 256;

/// `BPF_PSEUDO_MAP_FD`: a 64-bit load whose immediate is a map descriptor.
const PSEUDO_MAP_FD: u8 = 1;
/// `XDP_PASS`: what a packet of a queue with no socket gets.
const XDP_PASS: i32 = 2;
/// `BPF_FUNC_redirect_map`.
const REDIRECT_MAP: i32 = 51;

/// The redirect program, with `map` as its `XSKMAP`: each packet goes to the
/// socket at its RX queue's entry, or on to the stack when there is none.
fn program(map: c_int) -> [BpfInsn; 6] {
    let insn = |code, dst: u8, src: u8, off, imm| BpfInsn {
        code,
        regs: dst | src << 4,
        off,
        imm,
    };
    [
        // r2 = ((struct xdp_md *)r1)->rx_queue_index   (BPF_LDX|BPF_MEM|BPF_W)
        insn(0x61, 2, 1, 16, 0),
        // r1 = the XSKMAP (BPF_LD|BPF_IMM|BPF_DW: two slots, the second the
        // immediate's high half)
        insn(0x18, 1, PSEUDO_MAP_FD, 0, map),
        insn(0x00, 0, 0, 0, 0),
        // r3 = XDP_PASS: the action when the map has no socket for the queue
        // (BPF_ALU64|BPF_MOV|BPF_K)
        insn(0xb7, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)   (BPF_JMP|BPF_CALL)
        insn(0x85, 0, 0, 0, REDIRECT_MAP),
        // return r0   (BPF_JMP|BPF_EXIT)
        insn(0x95, 0, 0, 0, 0),
    ]
}

const LICENSE: &CStr = c"Dual MIT/GPL";

/// How the program runs on the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attach {
    /// In the driver, before an skb exists (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// On the skb, after the driver (`XDP_FLAGS_SKB_MODE`): any interface.
    Generic,
}

/// The program attached to one interface, and its map.
#[derive(Debug)]
pub(super) struct Attachment {
    map: OwnedFd,
    _prog: OwnedFd,
    /// The BPF link: closing its last descriptor detaches the program.
    _link: OwnedFd,
    pub(super) mode: Attach,
}

/// An interface of a network namespace (the nsfs file's device and inode).
type IfKey = (u64, u64, u32);

static ATTACHED: LazyLock<Mutex<HashMap<IfKey, Weak<Attachment>>>> = LazyLock::new(Mutex::default);

fn if_key(ifindex: u32) -> io::Result<IfKey> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((m.dev(), m.ino(), ifindex))
}

/// Whether this process has the program attached to `ifindex`, and how.
pub(super) fn ours(ifindex: u32) -> Option<Attach> {
    let key = if_key(ifindex).ok()?;
    lock(&ATTACHED).get(&key)?.upgrade().map(|a| a.mode)
}

/// The attachment on `ifindex`: this process's, or a new one in the mode
/// `modes` lists first that the kernel accepts. `EBUSY`/`EEXIST` where a
/// program that is not ours is attached: it is never replaced.
pub(super) fn attach(ifindex: u32, modes: &[Attach]) -> io::Result<Arc<Attachment>> {
    let key = if_key(ifindex)?;
    let mut reg = lock(&ATTACHED);
    if let Some(a) = reg.get(&key).and_then(Weak::upgrade) {
        return Ok(a);
    }
    let map = xskmap_create(MAP_ENTRIES)?;
    let prog = prog_load(&program(std::os::fd::AsRawFd::as_raw_fd(&map)), LICENSE)?;
    let mut last = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
    for &mode in modes {
        let flags = match mode {
            Attach::Native => XDP_FLAGS_DRV_MODE,
            Attach::Generic => XDP_FLAGS_SKB_MODE,
        };
        match link_create(prog.as_fd(), ifindex, flags) {
            Ok(link) => {
                let a = Arc::new(Attachment {
                    map,
                    _prog: prog,
                    _link: link,
                    mode,
                });
                reg.retain(|_, w| w.strong_count() > 0);
                reg.insert(key, Arc::downgrade(&a));
                return Ok(a);
            }
            // Another program: never replaced, whatever the mode.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST)) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Attachment {
    /// Steers queue `queue`'s packets to socket `fd`.
    pub(super) fn insert(&self, queue: u32, fd: BorrowedFd<'_>) -> io::Result<()> {
        map_update(self.map.as_fd(), queue, fd)
    }
}
