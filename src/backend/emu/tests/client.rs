//! A C-like client of the embedded kernel: the requests of [`Control`], and
//! rings driven through raw pointers as a C netmap program drives them.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::super::emu;
use crate::backend::kring::{RING_CUR, RING_HDR, RING_HEAD, RING_TAIL};
use crate::backend::sys::Deadline;
use crate::backend::{Control, Kernel, Mapping, PortFd, SyncDir};
use crate::ffi::nm_next as next;
use crate::ffi::{
    netmap_if, netmap_ring, netmap_slot, nmreq_port_info_get, nmreq_register, NETMAP_API, NR_EXCLUSIVE,
    NR_REG_ALL_NIC, NR_REG_ONE_NIC,
};
use crate::spec::{self, PortSpec};

/// The fixed part of a `netmap_if`, before `ring_ofs[]`.
const IF_HDR: usize = size_of::<netmap_if>();

/// `n` milliseconds from now.
pub(super) fn ms(n: u64) -> Deadline {
    Deadline::after(Some(Duration::from_millis(n)))
}

/// The spec of the embedded kernel's port `name`.
pub(super) fn spec_of(name: &str) -> PortSpec {
    spec::parse(&format!("emu:{name}")).expect("a valid emu: name")
}

/// REGISTER of `spec` on `ctl`, of all rings unless `f` asks otherwise;
/// the reply.
pub(super) fn register_spec(
    ctl: &mut dyn Control,
    spec: &PortSpec,
    f: impl FnOnce(&mut nmreq_register),
) -> io::Result<nmreq_register> {
    let mut req = nmreq_register {
        nr_mode: NR_REG_ALL_NIC,
        ..Default::default()
    };
    f(&mut req);
    ctl.register(spec, &mut req)?;
    Ok(req)
}

/// REGISTER of the port `name` on `ctl` (see [`register_spec`]).
pub(super) fn register_on(
    ctl: &mut dyn Control,
    name: &str,
    f: impl FnOnce(&mut nmreq_register),
) -> io::Result<nmreq_register> {
    register_spec(ctl, &spec_of(name), f)
}

/// PORT_INFO_GET of the port `name` on `ctl`, in our API version.
pub(super) fn port_info(ctl: &mut dyn Control, name: &str) -> io::Result<nmreq_port_info_get> {
    let mut info = nmreq_port_info_get::default();
    ctl.port_info(&spec_of(name), NETMAP_API, &mut info)?;
    Ok(info)
}

pub(super) fn errno_of<T: fmt::Debug>(r: io::Result<T>) -> i32 {
    r.expect_err("the request should fail")
        .raw_os_error()
        .expect("an errno")
}

/// An open, registered, mapped port: what `nmport_open` returns.
#[derive(Debug)]
pub(super) struct Port {
    pub(super) map: Mapping,
    pub(super) fd: Box<dyn PortFd>,
    pub(super) req: nmreq_register,
}

pub(super) fn open_with(name: &str, f: impl FnOnce(&mut nmreq_register)) -> io::Result<Port> {
    let mut ctl = emu().open()?;
    let req = register_on(&mut *ctl, name, f)?;
    let map = ctl.mmap(req.nr_memsize as usize)?;
    Ok(Port {
        map,
        fd: ctl.into_port(),
        req,
    })
}

pub(super) fn open(name: &str) -> Port {
    open_with(name, |_| {}).expect("open")
}

pub(super) fn open_slots(name: &str, slots: u32) -> Port {
    open_with(name, |r| {
        r.nr_tx_slots = slots;
        r.nr_rx_slots = slots;
    })
    .expect("open")
}

impl Port {
    pub(super) fn nifp(&self) -> *mut netmap_if {
        let off = self.req.nr_offset as usize;
        assert!(off + IF_HDR <= self.map.len());
        // SAFETY: the netmap_if lies inside the mapping (checked).
        unsafe { self.map.base().as_ptr().add(off).cast() }
    }

    pub(super) fn ring_ofs(&self, i: usize) -> isize {
        let nif = self.nifp();
        // SAFETY: `ring_ofs` has tx + rx entries, inside the mapping.
        unsafe { ptr::addr_of!((*nif).ring_ofs).cast::<isize>().add(i).read() }
    }

    pub(super) fn ring(&self, i: usize) -> Ring<'_> {
        let ofs = self.ring_ofs(i);
        assert_ne!(ofs, 0, "ring {i} is not bound");
        Ring {
            ring: self.nifp().cast::<u8>().wrapping_offset(ofs).cast(),
            _port: PhantomData,
        }
    }

    pub(super) fn tx(&self, i: usize) -> Ring<'_> {
        self.ring(i)
    }

    pub(super) fn rx(&self, i: usize) -> Ring<'_> {
        self.ring(self.req.nr_tx_rings as usize + i)
    }

    pub(super) fn sync(&self, dir: SyncDir) {
        self.fd.sync(dir).expect("sync");
    }

    pub(super) fn readable_now(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & libc::POLLIN != 0
    }
}

/// A ring of a mapped port, driven with raw pointers like C code does.
#[derive(Clone, Copy)]
pub(super) struct Ring<'a> {
    pub(super) ring: *mut netmap_ring,
    _port: PhantomData<&'a Port>,
}

impl Ring<'_> {
    pub(super) fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: the ring lies in the port's mapping, alive for 'a;
        // `off` is a u32 field of the header.
        unsafe { AtomicU32::from_ptr(self.ring.cast::<u8>().add(off).cast()) }
    }
    pub(super) fn head(&self) -> u32 {
        self.word(RING_HEAD).load(Ordering::Acquire)
    }
    pub(super) fn cur(&self) -> u32 {
        self.word(RING_CUR).load(Ordering::Acquire)
    }
    pub(super) fn tail(&self) -> u32 {
        self.word(RING_TAIL).load(Ordering::Acquire)
    }
    pub(super) fn set_head_cur(&self, head: u32, cur: u32) {
        self.word(RING_CUR).store(cur, Ordering::Release);
        self.word(RING_HEAD).store(head, Ordering::Release);
    }
    pub(super) fn advance(&self, to: u32) {
        self.set_head_cur(to, to);
    }
    pub(super) fn n(&self) -> u32 {
        // SAFETY: a constant header field of a live ring.
        unsafe { ptr::addr_of!((*self.ring).num_slots).read() }
    }
    /// A header field the kernel does not change after init.
    pub(super) fn konst<T: Copy>(&self, off: usize) -> T {
        // SAFETY: `off` is the offset of a `T` field of a live ring's
        // header, which nobody writes after init.
        unsafe { self.ring.cast::<u8>().add(off).cast::<T>().read() }
    }
    pub(super) fn dir(&self) -> u16 {
        self.konst(offset_of!(netmap_ring, dir))
    }
    pub(super) fn ringid(&self) -> u16 {
        self.konst(offset_of!(netmap_ring, ringid))
    }
    pub(super) fn buf_size(&self) -> u32 {
        self.konst(offset_of!(netmap_ring, nr_buf_size))
    }
    pub(super) fn slot(&self, i: u32) -> *mut netmap_slot {
        assert!(i < self.n());
        // SAFETY: slot `i < num_slots` of a live ring.
        unsafe {
            self.ring
                .cast::<u8>()
                .add(RING_HDR)
                .cast::<netmap_slot>()
                .add(i as usize)
        }
    }
    pub(super) fn get(&self, i: u32) -> netmap_slot {
        // SAFETY: a user-owned slot (tests only read slots in [head, tail)
        // or while no sync runs).
        unsafe { self.slot(i).read() }
    }
    pub(super) fn put(&self, i: u32, s: netmap_slot) {
        // SAFETY: as in `get`.
        unsafe { self.slot(i).write(s) }
    }
    pub(super) fn buf(&self, idx: u32) -> *mut u8 {
        // SAFETY: NETMAP_BUF of a live ring; the emu's buffer indices lie
        // inside the region.
        unsafe { crate::ffi::NETMAP_BUF(self.ring, idx) }
    }
    pub(super) fn space(&self) -> u32 {
        let (h, t, n) = (self.head(), self.tail(), self.n());
        if t >= h {
            t - h
        } else {
            t + n - h
        }
    }
    /// Writes one slot at `head` and moves head/cur past it.
    pub(super) fn send(&self, data: &[u8], flags: u16) -> bool {
        if self.space() == 0 {
            return false;
        }
        let h = self.head();
        let mut s = self.get(h);
        // SAFETY: the slot's buffer is user-owned and 2048 bytes long.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.buf(s.buf_idx), data.len()) };
        s.len = data.len() as u16;
        s.flags = flags;
        self.put(h, s);
        self.advance(next(h, self.n()));
        true
    }
    /// Reads the slot at `head` and moves head/cur past it.
    pub(super) fn recv(&self) -> Option<(Vec<u8>, u16)> {
        if self.space() == 0 {
            return None;
        }
        let h = self.head();
        let s = self.get(h);
        let mut v = vec![0u8; s.len as usize];
        // SAFETY: the slot is user-owned; its buffer holds `len` bytes.
        unsafe { ptr::copy_nonoverlapping(self.buf(s.buf_idx), v.as_mut_ptr(), v.len()) };
        self.advance(next(h, self.n()));
        Some((v, s.flags))
    }
}

pub(super) fn payload(i: u32) -> Vec<u8> {
    let len = 1 + (i as usize * 7) % 1500;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

/// Asks for `NR_EXCLUSIVE`.
pub(super) fn excl(r: &mut nmreq_register) {
    r.nr_flags |= NR_EXCLUSIVE;
}

/// Selects ring pair `id` (`NR_REG_ONE_NIC`), exclusively if `x`.
pub(super) fn one(id: u16, x: bool) -> impl FnOnce(&mut nmreq_register) {
    move |r: &mut nmreq_register| {
        r.nr_mode = NR_REG_ONE_NIC;
        r.nr_ringid = id;
        if x {
            excl(r);
        }
    }
}

/// An edge-triggered epoll set on one fd, as mio makes.
pub(super) struct Epoll(OwnedFd);

impl Epoll {
    pub(super) fn new(fd: BorrowedFd<'_>) -> Epoll {
        // SAFETY: epoll_create1 takes no pointers.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0);
        // SAFETY: `ep` was just opened and is owned by no one else.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
            u64: 0,
        };
        let (e, f) = (ep.as_raw_fd(), fd.as_raw_fd());
        // SAFETY: valid epoll fd, target fd and event.
        let rc = unsafe { libc::epoll_ctl(e, libc::EPOLL_CTL_ADD, f, &mut ev) };
        assert_eq!(rc, 0);
        Epoll(ep)
    }

    /// Waits until an event in `want` is reported (others, such as the
    /// writable edge a drain gives, are skipped as mio users skip them);
    /// false after 5 s without one.
    pub(super) fn wait_for(&self, want: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if self.wait(left.as_millis() as i32 + 1) & want != 0 {
                return true;
            }
        }
        false
    }

    /// The events of one wait, 0 on timeout.
    pub(super) fn wait(&self, timeout_ms: i32) -> u32 {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `out` has room for 4 events.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), out.as_mut_ptr(), 4, timeout_ms) };
        assert!(n >= 0, "{}", io::Error::last_os_error());
        out[..n as usize].iter().fold(0, |a, e| a | e.events)
    }
}
