use super::layout::{ring_bytes, Layout, MAX_FRAME};
use super::serves;
use crate::backend::within;
use crate::ffi::nmreq_register;

fn req(rx_slots: u32, tx_slots: u32) -> nmreq_register {
    nmreq_register {
        nr_rx_slots: rx_slots,
        nr_tx_slots: tx_slots,
        ..Default::default()
    }
}

#[test]
fn frames_fit_the_mtu() {
    let l = Layout::new(1500, 4096, &req(0, 0), true, true, false, 1, 1);
    assert_eq!((l.frame, l.block), (2048, 4096));
    assert_eq!((l.rx_slots, l.tx_slots), (1024, 1024));
    assert!(
        l.frame - 66 >= 1500 + 14 + 4,
        "an RX frame holds an MTU-sized packet"
    );
    let l = Layout::new(9000, 4096, &req(0, 0), true, true, false, 1, 1);
    assert_eq!((l.frame, l.block), (16384, 16384));
    assert_eq!(l.rx_slots, 1024);
    let l = Layout::new(65536, 4096, &req(0, 0), true, true, false, 1, 1);
    assert_eq!(l.frame, MAX_FRAME);
    assert_eq!(l.rx_slots, 256, "the default ring stays within 16 MiB");
}

#[test]
fn layout_is_page_and_frame_aligned() {
    let l = Layout::new(1500, 4096, &req(100, 7), true, true, true, 4, 4);
    assert_eq!(l.rx_slots, 100);
    assert_eq!(l.tx_slots, 8, "rounded up to whole blocks");
    assert_eq!(l.head_len % 4096, 0);
    assert_eq!(l.sock_len % l.block, 0);
    assert_eq!(l.total(), l.head_len + 4 * (108 * 2048));
    let (rx0, tx0) = l.first_bufs(0);
    let (rx1, _) = l.first_bufs(1);
    assert_eq!((rx0, tx0, rx1), (0, 100, 108));
    let (r, t) = l.ring_offsets(1);
    assert!(r >= l.nif_len && t > r && t + ring_bytes(8) <= l.head_len);
    assert_eq!(l.tx_off(), 42, "the virtio header goes before the packet");
    let tp = l.req(100);
    assert_eq!(
        tp.tp_block_nr * tp.tp_block_size,
        tp.tp_frame_nr * tp.tp_frame_size
    );
}

#[test]
fn tx_only_layout_has_no_rx_frames() {
    let l = Layout::new(1500, 4096, &req(64, 64), false, true, true, 1, 1);
    assert_eq!(l.sock_len, 64 * 2048);
    assert_eq!(l.first_bufs(0), (0, 0));
}

#[test]
fn netmap_only_names_are_refused() {
    let p = |s: &str| crate::spec::parse(s).unwrap();
    assert!(serves(&p("netmap:eth0")).is_ok());
    assert!(serves(&p("afpacket:eth0-1")).is_ok());
    assert!(serves(&p("netmap:eth0^")).unwrap_err().contains("host rings"));
    assert!(serves(&p("netmap:eth0*")).unwrap_err().contains("host rings"));
    assert!(serves(&p("netmap:eth0{1")).unwrap_err().contains("pipes"));
    assert!(serves(&p("vale0:p")).unwrap_err().contains("VALE"));
    assert!(serves(&p("netmap:vale0:p")).unwrap_err().contains("VALE"));
    assert!(serves(&p("emu:a{1")).is_err());
}

#[test]
fn wrapping_interval() {
    assert!(within(3, 2, 5) && !within(6, 2, 5));
    assert!(within(0, 6, 1) && within(7, 6, 1) && !within(3, 6, 1));
}

#[test]
fn register_checks_answer_before_any_socket_is_opened() {
    use crate::backend::{Kernel, SyncDir};
    use crate::ffi::{
        NETMAP_API, NR_MONITOR_TX, NR_REG_ONE_NIC, NR_REG_SW, NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY,
    };
    let spec = crate::spec::parse("afpacket:nmrsnone0").unwrap();
    let errno = |f: &dyn Fn(&mut nmreq_register)| {
        let mut ctl = super::AfPacket::default().open().unwrap();
        let mut r = nmreq_register::default();
        f(&mut r);
        ctl.register(&spec, &mut r).unwrap_err().raw_os_error()
    };
    assert_eq!(errno(&|r| r.nr_flags = NR_MONITOR_TX), Some(libc::EOPNOTSUPP));
    let both = NR_TX_RINGS_ONLY | NR_RX_RINGS_ONLY;
    assert_eq!(errno(&|r| r.nr_flags = both), Some(libc::EINVAL));
    // Directions, then the number of ring pairs, then the mode.
    let sw_both = |r: &mut nmreq_register| (r.nr_mode, r.nr_flags) = (NR_REG_SW, both);
    assert_eq!(errno(&sw_both), Some(libc::EINVAL));
    let sw_many = |r: &mut nmreq_register| (r.nr_mode, r.nr_tx_rings) = (NR_REG_SW, 65);
    assert_eq!(errno(&sw_many), Some(libc::EINVAL));
    assert_eq!(errno(&|r| r.nr_mode = NR_REG_SW), Some(libc::EOPNOTSUPP));
    let one = |r: &mut nmreq_register| (r.nr_mode, r.nr_ringid, r.nr_tx_rings) = (NR_REG_ONE_NIC, 2, 2);
    assert_eq!(errno(&one), Some(libc::EINVAL));
    // Past the checks: the interface does not exist.
    assert_eq!(errno(&|_| {}), Some(libc::ENODEV));
    // AF_PACKET knows no other request; unregistered, it binds nothing.
    let mut ctl = super::AfPacket::default().open().unwrap();
    let mut info = Default::default();
    let e = ctl.port_info(&spec, NETMAP_API, &mut info).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    let e = ctl.port_info(&spec, NETMAP_API + 1, &mut info).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(ctl.mmap(4096).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    let port = ctl.into_port();
    assert_eq!(
        port.sync(SyncDir::Rx).unwrap_err().raw_os_error(),
        Some(libc::ENXIO)
    );
}
