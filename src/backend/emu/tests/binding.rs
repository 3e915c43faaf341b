//! Binding: names, ring selection, exclusive and shared binders, shapes,
//! request checks, the lives of pipes and regions.

use std::collections::HashSet;

use super::super::registry::pipe_shape;
use super::super::{emu, DEFAULT_SLOTS, MAX_RINGS, MAX_SLOTS, MIN_SLOTS};
use super::client::*;
use crate::backend::{Kernel, SyncDir};
use crate::ffi::{
    nmreq_port_info_get, nmreq_register, NETMAP_API, NR_EXCLUSIVE, NR_REG_DEFAULT, NR_REG_ONE_NIC,
    NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY,
};

#[test]
fn either_end_makes_the_pair() {
    let mut fd = emu().open().unwrap();
    // No pair yet: nothing to describe.
    assert_eq!(errno_of(port_info(&mut *fd, "firstslave{1")), libc::ENOENT);
    let s = open_slots("firstslave}1", 32);
    assert_eq!(s.req.nr_tx_slots, 32);
    let m = open("firstslave{1");
    assert_eq!(m.req.nr_rx_slots, 32);
    assert!(s.tx(0).send(b"slave first", 0));
    s.sync(SyncDir::Tx);
    m.sync(SyncDir::Rx);
    assert_eq!(m.rx(0).recv().unwrap().0, b"slave first");
}

#[test]
fn pair_lives_while_either_end_is_open() {
    let m = open_slots("life{1", 8);
    let s = open("life}1");
    assert!(m.tx(0).send(b"kept", 0));
    m.sync(SyncDir::Tx);
    drop(m);
    // The slave keeps the pair; a new master binds the same rings.
    let m = open("life{1");
    assert_eq!(m.req.nr_tx_slots, 8);
    assert_eq!((m.tx(0).head(), m.tx(0).tail()), (1, 7));
    s.sync(SyncDir::Rx);
    assert_eq!(s.rx(0).recv().unwrap().0, b"kept");
    drop((m, s));
    // Both ends closed: the next master makes a new pair.
    let m = open_slots("life{1", 16);
    assert_eq!(m.req.nr_tx_slots, 16);
    assert_eq!((m.tx(0).head(), m.tx(0).tail()), (0, 15));
    drop(m);
    let mut fd = emu().open().unwrap();
    assert_eq!(errno_of(port_info(&mut *fd, "life}1")), libc::ENOENT);
}

#[test]
fn exclusive_rings_are_busy_for_every_other_binder() {
    let _m = open_with("busy{1", |r| {
        r.nr_tx_rings = 2;
        excl(r);
    })
    .unwrap();
    let mut fd = emu().open().unwrap();
    assert_eq!(errno_of(register_on(&mut *fd, "busy{1", excl)), libc::EBUSY);
    assert_eq!(errno_of(register_on(&mut *fd, "busy{1", |_| {})), libc::EBUSY);
    assert_eq!(
        errno_of(register_on(&mut *fd, "busy{1", one(1, true))),
        libc::EBUSY
    );
    assert_eq!(
        errno_of(register_on(&mut *fd, "busy{1", one(1, false))),
        libc::EBUSY
    );
    // Slave rings are separate.
    let _s0 = open_with("busy}1", one(0, true)).unwrap();
    let _s1 = open_with("busy}1", one(1, true)).unwrap();
    assert_eq!(
        errno_of(register_on(&mut *fd, "busy}1", one(1, false))),
        libc::EBUSY
    );
    assert_eq!(errno_of(register_on(&mut *fd, "busy}1", excl)), libc::EBUSY);
    // A registered handle cannot register again, as with the module.
    let mut fd2 = emu().open().unwrap();
    register_on(&mut *fd2, "busy{2", |_| {}).unwrap();
    assert_eq!(errno_of(register_on(&mut *fd2, "busy{3", |_| {})), libc::EBUSY);
    assert_eq!(errno_of(register_on(&mut *fd2, "busy{2", |_| {})), libc::EBUSY);
}

#[test]
fn shared_rings_take_any_number_of_shared_binders_and_no_exclusive_one() {
    let a = open("sh{1");
    let b = open("sh{1");
    assert_eq!(a.req.nr_mem_id, b.req.nr_mem_id);
    assert_eq!(a.tx(0).ring, b.tx(0).ring, "one ring, two binders");
    let mut fd = emu().open().unwrap();
    assert_eq!(errno_of(register_on(&mut *fd, "sh{1", excl)), libc::EBUSY);
    assert_eq!(errno_of(register_on(&mut *fd, "sh{1", one(0, true))), libc::EBUSY);
    assert_eq!(
        errno_of(register_on(&mut *fd, "sh{1", |r| {
            r.nr_flags = NR_EXCLUSIVE | NR_RX_RINGS_ONLY;
        })),
        libc::EBUSY
    );
    // Both binders get the ring's readiness edges.
    let s = open("sh}1");
    assert!(s.tx(0).send(b"to both", 0));
    s.sync(SyncDir::Tx);
    assert!(a.readable_now() && b.readable_now());
    // While one shared binder is left, the rings stay shared.
    drop(a);
    assert_eq!(errno_of(register_on(&mut *fd, "sh{1", excl)), libc::EBUSY);
    drop(b);
    register_on(&mut *fd, "sh{1", excl).unwrap();
}

#[test]
fn exclusive_rings_take_no_shared_binder() {
    let x = open_with("ex{1", excl).unwrap();
    // The slave end keeps the pipe while the master's binders change.
    let _s = open("ex}1");
    let mut fd = emu().open().unwrap();
    assert_eq!(errno_of(register_on(&mut *fd, "ex{1", |_| {})), libc::EBUSY);
    assert_eq!(
        errno_of(register_on(&mut *fd, "ex{1", |r| r.nr_flags = NR_TX_RINGS_ONLY)),
        libc::EBUSY
    );
    // The refusals bound nothing; closing the exclusive binder frees
    // the rings for shared ones.
    drop(x);
    register_on(&mut *fd, "ex{1", |_| {}).unwrap();
    let _again = open("ex{1");
}

#[test]
fn one_direction_of_an_end_does_not_overlap_the_other() {
    let t = open_with("tr{1", |r| r.nr_flags = NR_TX_RINGS_ONLY | NR_EXCLUSIVE).unwrap();
    let r = open_with("tr{1", |r| r.nr_flags = NR_RX_RINGS_ONLY | NR_EXCLUSIVE).unwrap();
    assert_ne!(t.ring_ofs(0), 0);
    assert_ne!(r.ring_ofs(1), 0);
    let mut fd = emu().open().unwrap();
    for flags in [NR_TX_RINGS_ONLY, NR_RX_RINGS_ONLY, 0, NR_EXCLUSIVE] {
        let got = register_on(&mut *fd, "tr{1", |r| r.nr_flags = flags);
        assert_eq!(errno_of(got), libc::EBUSY, "flags {flags:#x}");
    }
    drop(t);
    register_on(&mut *fd, "tr{1", |r| r.nr_flags = NR_TX_RINGS_ONLY).unwrap();
}

#[test]
fn ring_pairs_of_one_end_are_bound_apart() {
    let p0 = open_with("pairs{1", |r| {
        r.nr_tx_rings = 2;
        one(0, true)(r);
    })
    .unwrap();
    let p1 = open_with("pairs{1", one(1, true)).unwrap();
    let _s = open("pairs}1");
    let mut fd = emu().open().unwrap();
    // All rings include ring pair 0, held exclusively.
    assert_eq!(errno_of(register_on(&mut *fd, "pairs{1", |_| {})), libc::EBUSY);
    // A failed request binds nothing: after pair 0 closes, a request
    // that also asked for pair 1 leaves pair 0 free.
    drop(p0);
    assert_eq!(errno_of(register_on(&mut *fd, "pairs{1", excl)), libc::EBUSY);
    let p0 = open_with("pairs{1", one(0, true)).unwrap();
    drop((p0, p1));
    register_on(&mut *fd, "pairs{1", excl).unwrap();
}

#[test]
fn one_nic_binds_one_ring_pair() {
    let _m = open_with("one{1", |r| r.nr_tx_rings = 4).unwrap();
    let p = open_with("one}1", |r| {
        r.nr_mode = NR_REG_ONE_NIC;
        r.nr_ringid = 2;
    })
    .unwrap();
    assert_eq!(p.req.nr_mode, NR_REG_ONE_NIC);
    assert_eq!(p.req.nr_ringid, 2);
    assert_eq!((p.req.nr_tx_rings, p.req.nr_rx_rings), (4, 4));
    let bound: Vec<bool> = (0..8).map(|i| p.ring_ofs(i) != 0).collect();
    assert_eq!(bound, [false, false, true, false, false, false, true, false]);
    assert_eq!(p.tx(2).ringid(), 2);
    assert_eq!(p.rx(2).ringid(), 2);
    // A ring id past the pipe's rings.
    let mut fd = emu().open().unwrap();
    let r = register_on(&mut *fd, "one}1", |r| {
        r.nr_mode = NR_REG_ONE_NIC;
        r.nr_ringid = 4;
    });
    assert_eq!(errno_of(r), libc::EINVAL);
    // Other rings of that end are still free.
    register_on(&mut *fd, "one}1", |r| {
        r.nr_mode = NR_REG_ONE_NIC;
        r.nr_ringid = 3;
    })
    .unwrap();
}

#[test]
fn one_direction_only() {
    let t = open_with("dir{1", |r| r.nr_flags = crate::ffi::NR_TX_RINGS_ONLY).unwrap();
    assert_ne!(t.ring_ofs(0), 0);
    assert_eq!(t.ring_ofs(1), 0, "no RX ring");
    // The RX rings of the same end are still free.
    let r = open_with("dir{1", |r| r.nr_flags = crate::ffi::NR_RX_RINGS_ONLY).unwrap();
    assert_eq!(r.ring_ofs(0), 0);
    assert_ne!(r.ring_ofs(1), 0);
    let s = open("dir}1");
    assert!(t.tx(0).send(b"x", 0));
    t.sync(SyncDir::Tx);
    // A TX-only handle has no RX ring to sync: nothing happens.
    t.sync(SyncDir::Rx);
    s.sync(SyncDir::Rx);
    assert_eq!(s.rx(0).recv().unwrap().0, b"x");
    assert!(s.tx(0).send(b"y", 0));
    s.sync(SyncDir::Tx);
    r.sync(SyncDir::Rx);
    assert_eq!(r.rx(0).recv().unwrap().0, b"y");
    let mut fd = emu().open().unwrap();
    let both = register_on(&mut *fd, "dir2{1", |r| {
        r.nr_flags = crate::ffi::NR_TX_RINGS_ONLY | crate::ffi::NR_RX_RINGS_ONLY;
    });
    assert_eq!(errno_of(both), libc::EINVAL);
}

#[test]
fn bad_requests_are_refused() {
    let mut fd = emu().open().unwrap();
    let bad = spec_of("bad{1");
    let mut info = nmreq_port_info_get::default();

    // A request in another API version.
    let r = fd.port_info(&spec_of("bad}1"), NETMAP_API + 1, &mut info);
    assert_eq!(errno_of(r), libc::EINVAL);

    // Names the grammar refuses, as a hand-made spec may still hold them:
    // "", "{1", "bad{", "bad}".
    let mut empty = bad.clone();
    (empty.ifname, empty.pipe) = (String::new(), None);
    let mut no_parent = bad.clone();
    no_parent.ifname.clear();
    let mut no_id = bad.clone();
    no_id.pipe.as_mut().unwrap().id.clear();
    let mut no_slave_id = spec_of("bad}1");
    no_slave_id.pipe.as_mut().unwrap().id.clear();
    for (what, spec) in [
        ("", &empty),
        ("{1", &no_parent),
        ("bad{", &no_id),
        ("bad}", &no_slave_id),
    ] {
        assert_eq!(
            errno_of(register_spec(&mut *fd, spec, |_| {})),
            libc::EINVAL,
            "{what}"
        );
    }

    for mode in [
        crate::ffi::NR_REG_SW,
        crate::ffi::NR_REG_NIC_SW,
        crate::ffi::NR_REG_ONE_SW,
        99,
    ] {
        let r = register_on(&mut *fd, "bad{1", |r| r.nr_mode = mode);
        assert_eq!(errno_of(r), libc::EINVAL, "mode {mode}");
    }

    // Options: the embedded kernel implements none.
    for opts in [
        "@offset=64",
        "@extmem=/nonexistent/m",
        "@offset=64@extmem=/nonexistent/m",
    ] {
        let r = register_spec(&mut *fd, &spec_of(&format!("bad{{1{opts}")), |_| {});
        assert_eq!(errno_of(r), libc::EOPNOTSUPP, "{opts}");
    }

    // None of that registered anything; mmap and sync say so.
    assert_eq!(errno_of(fd.mmap(4096)), libc::EINVAL);
    let unregistered = emu().open().unwrap().into_port();
    assert_eq!(errno_of(unregistered.sync(SyncDir::Tx)), libc::ENXIO);
    assert_eq!(unregistered.poll(libc::POLLIN, ms(0)).unwrap(), libc::POLLERR);
    // The pipe "bad{1" was never made.
    assert_eq!(errno_of(port_info(&mut *fd, "bad}1")), libc::ENOENT);

    let req = register_on(&mut *fd, "bad{1", |_| {}).unwrap();
    assert_eq!(errno_of(fd.mmap(req.nr_memsize as usize + 1)), libc::EINVAL);
    assert!(fd.mmap(4096).is_ok());
}

#[test]
fn shapes_are_clamped_and_reported() {
    let p = open_with("shape{1", |r| {
        r.nr_tx_rings = 2;
        r.nr_rx_rings = 5;
        r.nr_tx_slots = 300;
        r.nr_rx_slots = 0;
    })
    .unwrap();
    assert_eq!((p.req.nr_tx_rings, p.req.nr_rx_rings), (5, 5));
    assert_eq!((p.req.nr_tx_slots, p.req.nr_rx_slots), (300, 300));
    // Too many slots are cut to the most (checked on the request alone: a
    // pipe of that shape takes 64 MiB of buffers, more than a container's
    // /dev/shm may hold).
    let big = nmreq_register {
        nr_tx_slots: 100_000,
        ..Default::default()
    };
    assert_eq!(pipe_shape(&big), (1, MAX_SLOTS));
    let q = open_with("shape{2", |r| {
        r.nr_tx_rings = 1000;
        r.nr_tx_slots = 1;
    })
    .unwrap();
    assert_eq!(q.req.nr_tx_rings as u32, MAX_RINGS);
    assert_eq!(q.req.nr_tx_slots, MIN_SLOTS);
}

#[test]
fn a_bare_name_is_a_loopback_port() {
    let mut fd = emu().open().unwrap();
    assert_eq!(
        errno_of(port_info(&mut *fd, "loop")),
        libc::ENOENT,
        "not made yet"
    );
    let p = open_with("loop", |r| {
        r.nr_tx_rings = 2;
        r.nr_tx_slots = 8;
        excl(r);
    })
    .unwrap();
    assert_eq!((p.req.nr_tx_rings, p.req.nr_rx_rings), (2, 2));
    let info = port_info(&mut *fd, "loop").unwrap();
    assert_eq!(info.nr_mem_id, p.req.nr_mem_id);
    for i in 0..2 {
        let (tx, rx) = (p.tx(i), p.rx(i));
        for k in 0..8 {
            assert_eq!(tx.get(k).buf_idx, rx.get(k).buf_idx, "a pair shares buffers");
        }
        assert!(tx.send(&[i as u8; 3], 0));
    }
    assert!(!p.readable_now());
    p.sync(SyncDir::Tx);
    assert!(p.readable_now(), "its own TX made it readable");
    p.sync(SyncDir::Rx);
    assert_eq!(p.rx(0).recv().unwrap().0, [0; 3]);
    assert_eq!(p.rx(1).recv().unwrap().0, [1; 3]);
    p.sync(SyncDir::Rx);
    assert!(!p.readable_now());
    // Laps over the small ring, driven through poll.
    for n in 0..100u32 {
        assert!(p.tx(1).send(&n.to_le_bytes(), 0));
        assert_eq!(p.fd.poll(libc::POLLIN, ms(1000)).unwrap(), libc::POLLIN);
        assert_eq!(p.rx(1).recv().unwrap().0, n.to_le_bytes());
    }
    // Its rings can be held exclusively too, and its pipes share its
    // region.
    assert_eq!(errno_of(register_on(&mut *fd, "loop", |_| {})), libc::EBUSY);
    let q = open("loop{1");
    assert_eq!(q.req.nr_mem_id, p.req.nr_mem_id);
    drop(p);
    let p = open("loop");
    assert_eq!(
        p.req.nr_tx_slots, DEFAULT_SLOTS,
        "its last handle closed: made anew"
    );
}

#[test]
fn default_mode_binds_everything() {
    let p = open_with("dflt{1", |r| {
        r.nr_mode = NR_REG_DEFAULT;
        r.nr_rx_rings = 2;
    })
    .unwrap();
    assert_eq!(p.req.nr_mode, NR_REG_DEFAULT, "echoed");
    assert!((0..4).all(|i| p.ring_ofs(i) != 0));
}

#[test]
fn port_info_describes_an_existing_pair() {
    let m = open_with("info{1", |r| {
        r.nr_tx_rings = 2;
        r.nr_tx_slots = 64;
    })
    .unwrap();
    let mut fd = emu().open().unwrap();
    let info = port_info(&mut *fd, "info}1").unwrap();
    assert_eq!(info.nr_memsize, m.req.nr_memsize);
    assert_eq!((info.nr_tx_slots, info.nr_rx_slots), (64, 64));
    assert_eq!((info.nr_tx_rings, info.nr_rx_rings), (2, 2));
    assert_eq!(info.nr_mem_id, m.req.nr_mem_id);
}

#[test]
fn memory_ids_follow_parents() {
    let a = open("memA{1");
    let b = open("memA{2");
    let c = open("memB{1");
    assert_eq!(a.req.nr_mem_id, b.req.nr_mem_id);
    assert_ne!(a.req.nr_mem_id, c.req.nr_mem_id);
    assert_ne!(a.req.nr_mem_id, 0);
    assert_eq!(a.req.nr_memsize, b.req.nr_memsize);
    assert_eq!(a.map.base(), b.map.base(), "one region per parent");
}

#[test]
fn open_close_cycles_do_not_exhaust_the_region() {
    // Keeps the region alive, so every cycle reuses its space.
    let keep = open("cyc{keep");
    let mut offsets = HashSet::new();
    for i in 0..10_000u32 {
        let id = i % 7;
        let m = open_with(&format!("cyc{{{id}"), |r| {
            r.nr_tx_rings = (i % 3) as u16 + 1;
            r.nr_tx_slots = 256;
        })
        .unwrap();
        let s = open(&format!("cyc}}{id}"));
        assert_eq!(m.req.nr_mem_id, keep.req.nr_mem_id);
        assert!(m.tx(0).send(b"p", 0));
        m.sync(SyncDir::Tx);
        s.sync(SyncDir::Rx);
        assert_eq!(s.rx(0).recv().unwrap().0, b"p");
        offsets.insert(m.req.nr_offset);
    }
    assert!(offsets.len() < 16, "netmap_if space is reused");
    // Whole regions come and go too.
    for i in 0..200 {
        let m = open(&format!("cyc{i}{{1"));
        let s = open(&format!("cyc{i}}}1"));
        drop((s, m));
    }
}
