//! VALE switch control on the real netmap module (`/dev/netmap`): a
//! persistent port is created, opened, attached, listed and deleted; a veth
//! is attached, with and without its host stack, listed and detached; the
//! kernel's refusals come back as typed errors.
//!
//! Without the module every test prints why it skips. The veth test needs
//! root and the `ip` tool; it makes its interfaces only where the module
//! is, and deletes them whatever happens.

use std::process::Command;

use netmap_rs::prelude::*;
use netmap_rs::vale::{self, PortConf};

fn skip(test: &str) -> bool {
    if std::path::Path::new("/dev/netmap").exists() {
        return false;
    }
    eprintln!("{test}: skipped: /dev/netmap does not exist (the netmap kernel module is not loaded)");
    true
}

/// The names of `switch`'s ports.
fn names(switch: &str) -> Vec<String> {
    vale::list(switch).unwrap().into_iter().map(|p| p.name).collect()
}

/// Detaches and deletes the persistent port on drop, whatever the test did.
struct Persistent {
    port: &'static str,
    on: &'static str,
}

impl Drop for Persistent {
    fn drop(&mut self) {
        let _ = vale::detach(self.on);
        let _ = vale::delete_port(self.port);
    }
}

#[test]
fn a_persistent_port_is_created_opened_attached_listed_and_deleted() {
    let test = "a_persistent_port_is_created_opened_attached_listed_and_deleted";
    if skip(test) {
        return;
    }
    let _cleanup = Persistent {
        port: "nmrsp0",
        on: "valenmrs0:nmrsp0",
    };
    let mut conf = PortConf::default();
    conf.tx_rings = 2;
    conf.rx_rings = 2;
    conf.tx_slots = 512;
    conf.rx_slots = 512;
    let got = vale::new_port("nmrsp0", &conf).unwrap();
    assert_eq!((got.tx_rings, got.rx_rings), (2, 2), "{got:?}");
    assert_eq!((got.tx_slots, got.rx_slots), (512, 512), "{got:?}");
    // Its name is taken now.
    let e = vale::new_port("nmrsp0", &conf).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");

    // It opens by its interface name, with the rings it was made with, and
    // stays when closed. (Closing it detaches it from a switch: open it
    // before attaching.)
    let port = NetmapBuilder::new("netmap:nmrsp0")
        .backend(BackendKind::Kernel)
        .build()
        .unwrap();
    assert_eq!((port.num_tx_rings(), port.num_rx_rings()), (2, 2));
    drop(port);
    let e = vale::new_port("nmrsp0", &conf).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");

    // Not on any switch until attached.
    assert!(names("valenmrs0").is_empty());
    let index = vale::attach("valenmrs0:nmrsp0", false).unwrap();
    let listed = vale::list("valenmrs0").unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].port_idx, index);
    let found = vale::lookup("valenmrs0:nmrsp0").unwrap();
    assert_eq!((found.bridge_idx, found.port_idx), (listed[0].bridge_idx, index));
    assert!(vale::list_all().unwrap().contains(&listed[0]));
    // Attached twice.
    let e = vale::attach("valenmrs0:nmrsp0", false).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    // Attached, it cannot be deleted.
    let e = vale::delete_port("nmrsp0").unwrap_err();
    assert!(matches!(e, Error::InUse { .. }), "{e:?}");

    assert_eq!(vale::detach("valenmrs0:nmrsp0").unwrap(), index);
    assert!(names("valenmrs0").is_empty());
    vale::delete_port("nmrsp0").unwrap();
    // Gone: deleting it again finds nothing.
    let e = vale::delete_port("nmrsp0").unwrap_err();
    assert!(matches!(e, Error::InterfaceNotFound { .. }), "{e:?}");
}

#[test]
fn what_does_not_exist_is_not_found() {
    let test = "what_does_not_exist_is_not_found";
    if skip(test) {
        return;
    }
    let e = vale::delete_port("nmrsnone0").unwrap_err();
    assert!(matches!(e, Error::InterfaceNotFound { .. }), "{e:?}");
    let e = vale::detach("valenmrs9:nmrsnone0").unwrap_err();
    assert!(matches!(e, Error::InterfaceNotFound { .. }), "{e:?}");
    let e = vale::attach("valenmrs9:nmrsnone0", false).unwrap_err();
    assert!(
        matches!(&e, Error::InterfaceNotFound { name } if name == "nmrsnone0"),
        "{e:?}"
    );
    let e = vale::lookup("valenmrs9:nmrsnone0").unwrap_err();
    assert!(matches!(e, Error::InterfaceNotFound { .. }), "{e:?}");
    // A switch without ports does not exist, and lists none.
    assert!(vale::list("valenmrs9").unwrap().is_empty());
}

/// `ip ARGS`, Ok when it exits 0.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A veth pair, detached from every switch and deleted on drop.
struct Veth(&'static str);

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = vale::detach(&format!("valenmrs1:{}", self.0));
        let _ = ip(&["link", "del", self.0]);
    }
}

#[test]
fn a_veth_is_attached_listed_and_detached() {
    let test = "a_veth_is_attached_listed_and_detached";
    if skip(test) {
        return;
    }
    let _ = ip(&["link", "del", "nmrsva"]);
    if let Err(e) = ip(&["link", "add", "nmrsva", "type", "veth", "peer", "name", "nmrsvb"]) {
        netmap_test_support::skip::skip(test, &format!("cannot make a veth pair ({e})"));
        return;
    }
    let _veth = Veth("nmrsva");
    ip(&["link", "set", "nmrsva", "up"]).unwrap();
    ip(&["link", "set", "nmrsvb", "up"]).unwrap();

    let index = vale::attach("valenmrs1:nmrsva", false).unwrap();
    let listed = vale::list("valenmrs1").unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].name.as_str(), listed[0].port_idx),
        ("valenmrs1:nmrsva", index)
    );
    let e = vale::attach("valenmrs1:nmrsva", false).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    assert!(e.to_string().contains("detach it first"), "{e}");
    // On a switch, its rings are the switch's.
    let e = NetmapBuilder::new("netmap:nmrsva")
        .backend(BackendKind::Kernel)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::Busy { .. }), "{e:?}");
    assert_eq!(vale::detach("valenmrs1:nmrsva").unwrap(), index);
    assert!(names("valenmrs1").is_empty());

    // With its host stack: two ports of the switch.
    vale::attach("valenmrs1:nmrsva", true).unwrap();
    let listed = names("valenmrs1");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&"valenmrs1:nmrsva".to_owned()), "{listed:?}");
    vale::detach("valenmrs1:nmrsva").unwrap();
    assert!(names("valenmrs1").is_empty());
    let e = vale::detach("valenmrs1:nmrsva").unwrap_err();
    assert!(matches!(e, Error::InterfaceNotFound { .. }), "{e:?}");
}

/// The virtio-net header on VALE ports: between two ports with 12-byte
/// headers it travels as it is; to a port without one, the switch takes it
/// off and does the checksum it asked for.
#[test]
fn virtio_net_headers_travel_and_checksums_are_done_for_ports_without() {
    use netmap_rs::vnet::{VnetHeader, VNET_HDR_MRG_LEN};
    use std::time::{Duration, Instant};
    if skip("virtio_net_headers_travel_and_checksums_are_done_for_ports_without") {
        return;
    }
    /// The one's-complement sum of `data`, unfolded.
    fn sum(data: &[u8]) -> u32 {
        data.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum()
    }
    fn fold(mut s: u32) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }
    // Broadcast UDP from 10.9.0.1 to 10.9.0.2, its checksum field holding
    // the pseudo-header's sum, as a sender that offloads the rest writes it.
    let payload = b"offloaded checksum";
    let udp_len = 8 + payload.len() as u16;
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = (20 + udp_len).to_be_bytes();
    f.extend_from_slice(&[
        0x45, 0, total[0], total[1], 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
    ]);
    let ip_sum = netmap_test_support::packets::ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    f.extend_from_slice(&[0x9c, 0x40, 0x12, 0xb5]);
    f.extend_from_slice(&udp_len.to_be_bytes());
    let pseudo = sum(&f[26..34]) + 17 + u32::from(udp_len);
    f.extend_from_slice(&fold(pseudo).to_be_bytes());
    f.extend_from_slice(payload);
    let hdr = VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..VnetHeader::default()
    };

    let a = NetmapBuilder::new("valenmrs3:ha").build().unwrap();
    let b = NetmapBuilder::new("valenmrs3:hb").build().unwrap();
    for p in ["valenmrs3:ha", "valenmrs3:hb"] {
        vale::set_header_len(p, VNET_HDR_MRG_LEN).unwrap();
        assert_eq!(vale::header_len(p).unwrap(), VNET_HDR_MRG_LEN);
    }
    assert!(matches!(
        vale::set_header_len("valenmrs3:ha", 11),
        Err(Error::Unsupported { .. })
    ));
    let recv = |port: &Netmap| -> Vec<u8> {
        let mut rx = port.rx_ring(0).unwrap();
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(20), "nothing arrived");
            rx.sync().unwrap();
            if let Some(frame) = rx.recv() {
                return frame.payload().to_vec();
            }
            port.poll(Some(Duration::from_millis(10))).unwrap();
        }
    };
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(&hdr.prepend(VNET_HDR_MRG_LEN, &f)).unwrap();
    tx.sync().unwrap();
    let got = recv(&b);
    let (seen, packet) = VnetHeader::split(&got, VNET_HDR_MRG_LEN).unwrap();
    assert_eq!(
        (seen.flags, seen.csum_start, seen.csum_offset),
        (hdr.flags, 34, 6),
        "{seen:?}"
    );
    assert_eq!(packet, &f[..], "passed as it was");

    // A receiver without a header gets the packet alone, checksummed.
    vale::set_header_len("valenmrs3:hb", 0).unwrap();
    tx.send(&hdr.prepend(VNET_HDR_MRG_LEN, &f)).unwrap();
    tx.sync().unwrap();
    let got = recv(&b);
    assert_eq!(got.len(), f.len());
    assert_eq!(&got[..40], &f[..40]);
    assert_ne!(got[40..42], f[40..42], "the switch filled the checksum in");
    let check = fold(sum(&got[26..34]) + 17 + u32::from(udp_len) + sum(&got[34..]));
    assert_eq!(check, 0xffff, "a valid UDP checksum");
}
