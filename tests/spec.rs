//! The port-name parser: every form of the grammar, every error position, and
//! property tests over generated names (never panics; the normalized text
//! parses back to the same spec).

use netmap_rs::spec::{self, parse, PipeRole, PipeSpec, PortKind, PortSpec, RingSelect};
use netmap_rs::Error;
use netmap_test_support::packets::Rng;

const X: u64 = 0x800; // NR_EXCLUSIVE
const Z: u64 = 0x400; // NR_ZCOPY_MON
const T_MON: u64 = 0x100; // NR_MONITOR_TX
const R_MON: u64 = 0x200; // NR_MONITOR_RX
const R_ONLY: u64 = 0x2000; // NR_RX_RINGS_ONLY
const T_ONLY: u64 = 0x4000; // NR_TX_RINGS_ONLY

// The spec types are `#[non_exhaustive]`: outside the crate they cannot be
// written as struct literals. The expected specs are written in these
// mirrors, field for field, and each parsed spec is copied into one.

/// [`PortSpec`], field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    text: String,
    kind: PortKind,
    nr_name: String,
    ifname: String,
    pipe: Option<PipeSpec>,
    rings: RingSelect,
    flags: u64,
    mem_id: u16,
    conf: Conf,
    offset: Option<OffsetOpt>,
    extmem: Option<ExtmemOpt>,
}

/// [`spec::Conf`], field for field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Conf {
    tx_rings: Option<u16>,
    rx_rings: Option<u16>,
    host_tx_rings: Option<u16>,
    host_rx_rings: Option<u16>,
    tx_slots: Option<u32>,
    rx_slots: Option<u32>,
}

/// [`spec::OffsetOpt`], field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OffsetOpt {
    initial: u64,
    maxoff: u64,
    bits: u64,
    mingap: u64,
}

/// [`spec::ExtmemOpt`], field for field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ExtmemOpt {
    file: String,
    if_num: Option<u64>,
    if_size: Option<u64>,
    ring_num: Option<u64>,
    ring_size: Option<u64>,
    buf_num: Option<u64>,
    buf_size: Option<u64>,
}

impl Spec {
    /// The mirror of `s`.
    fn of(s: &PortSpec) -> Spec {
        let c = &s.conf;
        Spec {
            text: s.text.clone(),
            kind: s.kind.clone(),
            nr_name: s.nr_name.clone(),
            ifname: s.ifname.clone(),
            pipe: s.pipe.clone(),
            rings: s.rings,
            flags: s.flags,
            mem_id: s.mem_id,
            conf: Conf {
                tx_rings: c.tx_rings,
                rx_rings: c.rx_rings,
                host_tx_rings: c.host_tx_rings,
                host_rx_rings: c.host_rx_rings,
                tx_slots: c.tx_slots,
                rx_slots: c.rx_slots,
            },
            offset: s.offset.as_ref().map(|o: &spec::OffsetOpt| OffsetOpt {
                initial: o.initial,
                maxoff: o.maxoff,
                bits: o.bits,
                mingap: o.mingap,
            }),
            extmem: s.extmem.as_ref().map(|x: &spec::ExtmemOpt| ExtmemOpt {
                file: x.file.clone(),
                if_num: x.if_num,
                if_size: x.if_size,
                ring_num: x.ring_num,
                ring_size: x.ring_size,
                buf_num: x.buf_num,
                buf_size: x.buf_size,
            }),
        }
    }
}

/// The spec of a plain `netmap:` port with nothing but a name.
fn base(text: &str, nr_name: &str) -> Spec {
    Spec {
        text: text.into(),
        kind: PortKind::Netmap,
        nr_name: nr_name.into(),
        ifname: nr_name.into(),
        pipe: None,
        rings: RingSelect::AllNic,
        flags: 0,
        mem_id: 0,
        conf: Conf::default(),
        offset: None,
        extmem: None,
    }
}

fn vale(bridge: &str) -> PortKind {
    PortKind::Vale {
        bridge: bridge.into(),
    }
}

fn pipe(role: PipeRole, id: &str) -> Option<PipeSpec> {
    Some(PipeSpec::new(role, id))
}

fn extmem(file: &str) -> ExtmemOpt {
    ExtmemOpt {
        file: file.into(),
        ..ExtmemOpt::default()
    }
}

fn offset(initial: u64, bits: u64) -> Option<OffsetOpt> {
    Some(OffsetOpt {
        initial,
        maxoff: initial,
        bits,
        mingap: 0,
    })
}

/// Every form of the grammar, with the whole expected `PortSpec`.
fn good_names() -> Vec<(&'static str, Spec)> {
    let n = "netmap:eth0";
    vec![
        // Prefixes.
        ("netmap:eth0", base(n, "eth0")),
        ("eth0", base(n, "eth0")),
        (
            "vale0:p1",
            Spec {
                kind: vale("vale0"),
                ..base("vale0:p1", "vale0:p1")
            },
        ),
        (
            "valeA_b:port",
            Spec {
                kind: vale("valeA_b"),
                ..base("valeA_b:port", "valeA_b:port")
            },
        ),
        (
            "vale:x",
            Spec {
                kind: vale("vale"),
                ..base("vale:x", "vale:x")
            },
        ),
        (
            "emu:foo",
            Spec {
                kind: PortKind::Emu,
                ..base("emu:foo", "foo")
            },
        ),
        (
            "afpacket:eth0",
            Spec {
                kind: PortKind::AfPacket,
                ..base("afpacket:eth0", "eth0")
            },
        ),
        (
            "afpacket:eth0-1/x",
            Spec {
                kind: PortKind::AfPacket,
                rings: RingSelect::OneNic(1),
                flags: X,
                ..base("afpacket:eth0-1/x", "eth0")
            },
        ),
        // A `:` inside the port name of a `netmap:` name is netmap's business.
        ("netmap:a:b", base("netmap:a:b", "a:b")),
        ("netmap:vale0:p", base("netmap:vale0:p", "vale0:p")),
        // Any bytes but the separators are part of the name.
        ("netmap:ét h0", base("netmap:ét h0", "ét h0")),
        // Pipes, both roles, on every prefix that has them.
        (
            "eth0{1",
            Spec {
                ifname: "eth0".into(),
                pipe: pipe(PipeRole::Master, "1"),
                ..base("netmap:eth0{1", "eth0{1")
            },
        ),
        (
            "netmap:eth0}pipe_A9",
            Spec {
                ifname: "eth0".into(),
                pipe: pipe(PipeRole::Slave, "pipe_A9"),
                ..base("netmap:eth0}pipe_A9", "eth0}pipe_A9")
            },
        ),
        (
            "vale0:p{2",
            Spec {
                kind: vale("vale0"),
                ifname: "vale0:p".into(),
                pipe: pipe(PipeRole::Master, "2"),
                ..base("vale0:p{2", "vale0:p{2")
            },
        ),
        (
            "valeA:p}2",
            Spec {
                kind: vale("valeA"),
                ifname: "valeA:p".into(),
                pipe: pipe(PipeRole::Slave, "2"),
                ..base("valeA:p}2", "valeA:p}2")
            },
        ),
        (
            "emu:foo{1",
            Spec {
                kind: PortKind::Emu,
                ifname: "foo".into(),
                pipe: pipe(PipeRole::Master, "1"),
                ..base("emu:foo{1", "foo{1")
            },
        ),
        (
            "emu:foo}1-0",
            Spec {
                kind: PortKind::Emu,
                ifname: "foo".into(),
                pipe: pipe(PipeRole::Slave, "1"),
                rings: RingSelect::OneNic(0),
                ..base("emu:foo}1-0", "foo}1")
            },
        ),
        // Ring suffixes.
        (
            "eth0^",
            Spec {
                rings: RingSelect::Host,
                ..base("netmap:eth0^", "eth0")
            },
        ),
        (
            "eth0^3",
            Spec {
                rings: RingSelect::OneHost(3),
                ..base("netmap:eth0^3", "eth0")
            },
        ),
        (
            "eth0*",
            Spec {
                rings: RingSelect::NicAndHost,
                ..base("netmap:eth0*", "eth0")
            },
        ),
        (
            "eth0-2",
            Spec {
                rings: RingSelect::OneNic(2),
                ..base("netmap:eth0-2", "eth0")
            },
        ),
        (
            "eth0-4094",
            Spec {
                rings: RingSelect::OneNic(4094),
                ..base("netmap:eth0-4094", "eth0")
            },
        ),
        (
            "eth0-007",
            Spec {
                rings: RingSelect::OneNic(7),
                ..base("netmap:eth0-007", "eth0")
            },
        ),
        // Each flag, then all of them.
        (
            "eth0/x",
            Spec {
                flags: X,
                ..base("netmap:eth0/x", "eth0")
            },
        ),
        (
            "eth0/z",
            Spec {
                flags: Z,
                ..base("netmap:eth0/z", "eth0")
            },
        ),
        (
            "eth0/t",
            Spec {
                flags: T_MON,
                ..base("netmap:eth0/t", "eth0")
            },
        ),
        (
            "eth0/r",
            Spec {
                flags: R_MON,
                ..base("netmap:eth0/r", "eth0")
            },
        ),
        (
            "eth0/R",
            Spec {
                flags: R_ONLY,
                ..base("netmap:eth0/R", "eth0")
            },
        ),
        (
            "eth0/T",
            Spec {
                flags: T_ONLY,
                ..base("netmap:eth0/T", "eth0")
            },
        ),
        (
            "eth0*/xztrRTx",
            Spec {
                rings: RingSelect::NicAndHost,
                flags: X | Z | T_MON | R_MON | R_ONLY | T_ONLY,
                ..base("netmap:eth0*/xztrRTx", "eth0")
            },
        ),
        // Memory id, alone, repeated with the same value, before and after flags.
        (
            "eth0@2",
            Spec {
                mem_id: 2,
                ..base("netmap:eth0@2", "eth0")
            },
        ),
        (
            "eth0@65535@65535",
            Spec {
                mem_id: 65535,
                ..base("netmap:eth0@65535@65535", "eth0")
            },
        ),
        (
            "eth0-1/x@2",
            Spec {
                rings: RingSelect::OneNic(1),
                flags: X,
                mem_id: 2,
                ..base("netmap:eth0-1/x@2", "eth0")
            },
        ),
        (
            "eth0^@3/R",
            Spec {
                rings: RingSelect::Host,
                flags: R_ONLY,
                mem_id: 3,
                ..base("netmap:eth0^@3/R", "eth0")
            },
        ),
        (
            "eth0/x@2/T",
            Spec {
                flags: X | T_ONLY,
                mem_id: 2,
                ..base("netmap:eth0/x@2/T", "eth0")
            },
        ),
        // As in libnetmap, an empty flag list is accepted before `@`.
        (
            "eth0/@4",
            Spec {
                mem_id: 4,
                ..base("netmap:eth0/@4", "eth0")
            },
        ),
        // @conf, every key.
        (
            "eth0@conf:rings=2",
            Spec {
                conf: Conf {
                    tx_rings: Some(2),
                    rx_rings: Some(2),
                    ..Conf::default()
                },
                ..base("netmap:eth0@conf:rings=2", "eth0")
            },
        ),
        (
            "eth0@conf:host_rings=1,slots=1024",
            Spec {
                conf: Conf {
                    host_tx_rings: Some(1),
                    host_rx_rings: Some(1),
                    tx_slots: Some(1024),
                    rx_slots: Some(1024),
                    ..Conf::default()
                },
                ..base("netmap:eth0@conf:host_rings=1,slots=1024", "eth0")
            },
        ),
        (
            "vale0:v@conf:tx_rings=1,rx_rings=2,host_tx_rings=3,host_rx_rings=4,tx_slots=5,rx_slots=4294967295",
            Spec {
                kind: vale("vale0"),
                conf: Conf {
                    tx_rings: Some(1),
                    rx_rings: Some(2),
                    host_tx_rings: Some(3),
                    host_rx_rings: Some(4),
                    tx_slots: Some(5),
                    rx_slots: Some(u32::MAX),
                },
                ..base(
                    "vale0:v@conf:tx_rings=1,rx_rings=2,host_tx_rings=3,host_rx_rings=4,tx_slots=5,rx_slots=4294967295",
                    "vale0:v",
                )
            },
        ),
        // Specific keys beat the shorthands; `-` reads as `_` in keys.
        (
            "eth0@conf:tx-rings=4,rings=2,host-tx-rings=0",
            Spec {
                conf: Conf {
                    tx_rings: Some(4),
                    rx_rings: Some(2),
                    host_tx_rings: Some(0),
                    ..Conf::default()
                },
                ..base("netmap:eth0@conf:tx-rings=4,rings=2,host-tx-rings=0", "eth0")
            },
        ),
        // conf may repeat: the later wins.
        (
            "eth0@conf:rings=2@conf:rx_rings=3",
            Spec {
                conf: Conf {
                    tx_rings: Some(2),
                    rx_rings: Some(3),
                    ..Conf::default()
                },
                ..base("netmap:eth0@conf:rings=2@conf:rx_rings=3", "eth0")
            },
        ),
        ("eth0@conf:", base("netmap:eth0@conf:", "eth0")),
        // @offset: default key, keys.
        (
            "eth0@offset=64",
            Spec {
                offset: offset(64, 0),
                ..base("netmap:eth0@offset=64", "eth0")
            },
        ),
        (
            "eth0@offset:initial=128,bits=10",
            Spec {
                offset: offset(128, 10),
                ..base("netmap:eth0@offset:initial=128,bits=10", "eth0")
            },
        ),
        (
            "eth0@offset:bits=1,initial=18446744073709551615",
            Spec {
                offset: offset(u64::MAX, 1),
                ..base("netmap:eth0@offset:bits=1,initial=18446744073709551615", "eth0")
            },
        ),
        // @extmem: default key, every key.
        (
            "eth0@extmem=/dev/shm/nm",
            Spec {
                extmem: Some(extmem("/dev/shm/nm")),
                ..base("netmap:eth0@extmem=/dev/shm/nm", "eth0")
            },
        ),
        // As in libnetmap, `NAME=` gives the whole rest to the default key.
        (
            "eth0@extmem=/a,b=c:d",
            Spec {
                extmem: Some(extmem("/a,b=c:d")),
                ..base("netmap:eth0@extmem=/a,b=c:d", "eth0")
            },
        ),
        (
            "eth0@extmem:file=/f,if_num=1,if_size=2,ring_num=3,ring_size=4,buf_num=5,buf_size=4294967295",
            Spec {
                extmem: Some(ExtmemOpt {
                    if_num: Some(1),
                    if_size: Some(2),
                    ring_num: Some(3),
                    ring_size: Some(4),
                    buf_num: Some(5),
                    buf_size: Some(4_294_967_295),
                    ..extmem("/f")
                }),
                ..base(
                    "netmap:eth0@extmem:file=/f,if_num=1,if_size=2,ring_num=3,ring_size=4,buf_num=5,buf_size=4294967295",
                    "eth0",
                )
            },
        ),
        (
            "eth0@extmem:buf-num=9,file=x",
            Spec {
                extmem: Some(ExtmemOpt {
                    buf_num: Some(9),
                    ..extmem("x")
                }),
                ..base("netmap:eth0@extmem:buf-num=9,file=x", "eth0")
            },
        ),
        // Everything at once, in the order nmreq_register_decode takes.
        (
            "netmap:eth0{p-1/xz@2@conf:rings=2@offset=8@extmem:file=/m",
            Spec {
                ifname: "eth0".into(),
                pipe: pipe(PipeRole::Master, "p"),
                rings: RingSelect::OneNic(1),
                flags: X | Z,
                mem_id: 2,
                conf: Conf {
                    tx_rings: Some(2),
                    rx_rings: Some(2),
                    ..Conf::default()
                },
                offset: offset(8, 0),
                extmem: Some(extmem("/m")),
                ..base(
                    "netmap:eth0{p-1/xz@2@conf:rings=2@offset=8@extmem:file=/m",
                    "eth0{p",
                )
            },
        ),
        (
            "eth0-1/x@2@conf:rings=2",
            Spec {
                rings: RingSelect::OneNic(1),
                flags: X,
                mem_id: 2,
                conf: Conf {
                    tx_rings: Some(2),
                    rx_rings: Some(2),
                    ..Conf::default()
                },
                ..base("netmap:eth0-1/x@2@conf:rings=2", "eth0")
            },
        ),
        // Options straight after flags (no memory id).
        (
            "emu:a}b^0/t@extmem:file=f@conf:slots=8",
            Spec {
                kind: PortKind::Emu,
                ifname: "a".into(),
                pipe: pipe(PipeRole::Slave, "b"),
                rings: RingSelect::OneHost(0),
                flags: T_MON,
                conf: Conf {
                    tx_slots: Some(8),
                    rx_slots: Some(8),
                    ..Conf::default()
                },
                extmem: Some(extmem("f")),
                ..base("emu:a}b^0/t@extmem:file=f@conf:slots=8", "a}b")
            },
        ),
    ]
}

#[test]
fn every_form_parses_to_the_expected_spec() {
    for (name, want) in good_names() {
        let got = parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(Spec::of(&got), want, "{name}");
        // FromStr and Display agree with parse and text.
        assert_eq!(name.parse::<PortSpec>().unwrap(), got, "{name}");
        assert_eq!(got.to_string(), want.text, "{name}");
        assert_eq!(parse(&got.text).unwrap(), got, "{name} round trip");
    }
}

#[test]
fn longest_names() {
    let name63 = "e".repeat(63);
    let s = parse(&name63).unwrap();
    assert_eq!(s.nr_name, name63);
    let vale = format!("vale0:{}", "p".repeat(57));
    assert_eq!(parse(&vale).unwrap().nr_name.len(), 63);
    let pipe = format!("{}{{{}", "a".repeat(30), "1".repeat(32));
    assert_eq!(parse(&pipe).unwrap().nr_name.len(), 63);
}

#[test]
fn helpers() {
    let s = parse("vale0:p}1^2").unwrap();
    assert!(s.is_vale() && s.is_pipe() && s.is_host());
    assert!(parse("eth0^").unwrap().is_host());
    assert!(!parse("eth0*").unwrap().is_host());
    assert!(!parse("eth0-1").unwrap().is_host());
    assert!(parse("netmap:vale_x:p").unwrap().is_vale());
    assert!(!parse("netmap:valentine").unwrap().is_vale());
    assert!(!parse("emu:vale0:p").unwrap().is_vale());
    assert!(!parse("eth0").unwrap().is_pipe());

    let modes = [
        (RingSelect::AllNic, 1, 0),
        (RingSelect::Host, 2, 0),
        (RingSelect::NicAndHost, 3, 0),
        (RingSelect::OneNic(7), 4, 7),
        (RingSelect::OneHost(9), 8, 9),
    ];
    for (r, mode, id) in modes {
        assert_eq!(r.nr_mode(), mode, "{r:?}");
        assert_eq!(r.nr_ringid(), id, "{r:?}");
    }
}

/// Bad names: the byte position of the fault and a word the expectation must
/// contain.
const BAD_NAMES: &[(&str, usize, &str)] = &[
    // Prefixes.
    ("foo:eth0", 0, "prefixes"),
    ("netmapx:eth0", 0, "prefixes"),
    (":eth0", 0, "prefixes"),
    ("Netmap:eth0", 0, "prefixes"),
    ("eth0-1:x", 0, "prefixes"),
    ("vale-0:p", 4, "VALE switch name"),
    ("vale0.1:p", 5, "VALE switch name"),
    // The port name.
    ("", 0, "port name"),
    ("netmap:", 7, "port name"),
    ("vale0:", 6, "port name"),
    ("emu:-1", 4, "port name"),
    ("^", 0, "port name"),
    ("@conf:rings=1", 0, "port name"),
    ("eth\u{0}0", 3, "NUL"),
    // Pipes.
    ("eth0{", 5, "pipe id"),
    ("netmap:eth0}-1", 12, "pipe id"),
    ("eth0{a.b", 6, "pipe id"),
    ("eth0{1{2", 6, "pipe id"),
    ("eth0{1}2", 6, "pipe id"),
    ("{1", 0, "port name before `{`"),
    ("vale0:}1", 6, "port name before `}`"),
    // afpacket refusals.
    ("afpacket:eth0{1", 13, "pipe"),
    ("afpacket:eth0^", 13, "host rings"),
    ("afpacket:eth0*/x", 13, "host rings"),
    ("afpacket:vale0:p", 14, "VALE"),
    // Ring suffixes.
    ("eth0-", 5, "ring number after `-`"),
    ("eth0-x", 5, "ring number after `-`"),
    ("netmap:eth0-x", 12, "ring number after `-`"),
    ("eth0-4095", 5, "below 4095"),
    ("eth0-99999999999999999999999", 5, "below 4095"),
    ("eth0^4095", 5, "below 4095"),
    ("eth0-1-2", 6, "`/`"),
    ("eth0*^", 5, "`/`"),
    ("eth0^1x", 6, "`/`"),
    ("eth0-2x", 6, "`/`"),
    ("eth0@2:x", 6, "`/`"),
    // Flags.
    ("eth0/", 5, "flags x z t r R T"),
    ("eth0/q", 5, "flags x z t r R T"),
    ("eth0/xX", 6, "flags x z t r R T"),
    ("eth0/x/z", 6, "flags x z t r R T"),
    ("eth0/x-1", 6, "flags x z t r R T"),
    // Memory id.
    ("eth0@", 5, "memory id"),
    ("eth0@0", 5, "memory id from 1"),
    ("eth0@65536", 5, "memory id from 1"),
    ("eth0@1@2", 7, "memory id given before (1)"),
    ("eth0/x@", 7, "memory id"),
    // Options.
    ("eth0@@conf:", 5, "options conf, extmem, offset"),
    ("eth0@conf:rings=1@", 18, "options conf, extmem, offset"),
    ("eth0@foo:x=1", 5, "options conf, extmem, offset"),
    ("eth0@Conf:rings=1", 5, "options conf, extmem, offset"),
    ("eth0@share:eth1", 5, "`@N`"),
    ("eth0@conf", 9, "`:` after option `conf`"),
    ("eth0@conf=2", 9, "no default key"),
    ("eth0@extmem", 11, "`=` or `:`"),
    ("eth0@offset", 11, "`=` or `:`"),
    ("eth0@extmem=", 12, "value after `extmem=`"),
    ("eth0@offset=", 12, "value after `offset=`"),
    ("eth0@conf:ring=2", 10, "keys rings, host_rings"),
    ("eth0@conf:rings", 15, "`=` after option key `rings`"),
    ("eth0@conf:slots,rings=1", 15, "`=` after option key `slots`"),
    ("eth0@conf:rings=", 16, "value after `rings=`"),
    ("eth0@conf:rings=,slots=1", 16, "value after `rings=`"),
    ("eth0@conf:rings=1,", 18, "keys"),
    ("eth0@conf:rings=1,,slots=2", 18, "keys"),
    ("eth0@conf:,rings=1", 10, "keys"),
    ("eth0@conf:=1", 10, "keys"),
    ("eth0@conf:rings=1,rings=2", 18, "`rings` was already given"),
    (
        "eth0@conf:tx_rings=1,tx-rings=1",
        21,
        "`tx_rings` was already given",
    ),
    ("eth0@conf:rings=x", 16, "decimal number"),
    ("eth0@conf:rings=1x", 17, "decimal number"),
    ("eth0@conf:rings=-1", 16, "decimal number"),
    ("eth0@conf:rings=+1", 16, "decimal number"),
    ("eth0@conf:rings= 1", 16, "decimal number"),
    ("eth0@conf:slots=1K", 17, "decimal number"),
    ("eth0@conf:rings=65536", 16, "at most 65535"),
    ("eth0@conf:host_rings=70000", 21, "at most 65535"),
    ("eth0@conf:slots=4294967296", 16, "at most 4294967295"),
    (
        "eth0@conf:rx_slots=99999999999999999999999",
        19,
        "at most 4294967295",
    ),
    ("eth0@offset=1x", 13, "decimal number"),
    ("eth0@offset=64,bits=3", 14, "decimal number"),
    (
        "eth0@offset:initial=18446744073709551616",
        20,
        "at most 18446744073709551615",
    ),
    ("eth0@offset:bits=2", 18, "key `initial`"),
    ("eth0@offset:", 12, "key `initial`"),
    ("eth0@offset:initial=1,maxoff=2", 22, "keys initial, bits"),
    ("eth0@offset=1@offset=2", 14, "`offset` was already given"),
    ("eth0@extmem:", 12, "key `file`"),
    ("eth0@extmem:buf_num=1@conf:", 21, "key `file`"),
    ("eth0@extmem:file=", 17, "value after `file=`"),
    ("eth0@extmem:file=a,buf_num=4294967296", 27, "at most 4294967295"),
    ("eth0@extmem:file=a,nope=1", 19, "keys file, if_num"),
    ("eth0@extmem=a@extmem=b", 14, "`extmem` was already given"),
    ("eth0@conf:rings=1@offset", 24, "`=` or `:`"),
];

#[test]
fn bad_names_point_at_the_fault() {
    for &(name, want_pos, want_words) in BAD_NAMES {
        match parse(name) {
            Err(Error::InvalidPortSpec {
                spec,
                position,
                expected,
            }) => {
                assert_eq!(spec, name, "{name:?}: spec is the name as given");
                assert_eq!(position, want_pos, "{name:?}: position ({expected})");
                assert!(
                    expected.contains(want_words),
                    "{name:?}: expected {expected:?} should mention {want_words:?}"
                );
            }
            other => panic!("{name:?} should fail, got {other:?}"),
        }
    }
}

#[test]
fn too_long_names_point_at_the_64th_byte() {
    let cases = [
        ("e".repeat(64), 63, "at most 63 bytes"),
        (format!("netmap:{}", "e".repeat(80)), 7 + 63, "at most 63 bytes"),
        (format!("emu:{}-1", "e".repeat(64)), 4 + 63, "at most 63 bytes"),
        (format!("vale0:{}", "p".repeat(58)), 63, "`vale0:` included"),
        (format!("a{{{}", "1".repeat(63)), 63, "at most 63 bytes"),
    ];
    for (name, want_pos, want_words) in cases {
        match parse(&name) {
            Err(Error::InvalidPortSpec {
                position, expected, ..
            }) => {
                assert_eq!(position, want_pos, "{name}");
                assert!(expected.contains(want_words), "{name}: {expected}");
            }
            other => panic!("{name} should fail, got {other:?}"),
        }
    }
}

#[test]
fn error_messages_show_the_name_and_the_caret() {
    let e = parse("eth0/q").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("`eth0/q` at byte 5"), "{text}");
    assert!(text.contains("one of the flags x z t r R T"), "{text}");
}

/// Pieces of the grammar, joined at random: most results are wrong in some
/// way, many are right.
fn grammar_soup(rng: &mut Rng) -> String {
    const TOKENS: &[&str] = &[
        "netmap:",
        "vale0:",
        "vale:",
        "valeA_1:",
        "emu:",
        "afpacket:",
        "eth0",
        "p",
        "é",
        ":",
        "{",
        "}",
        "1",
        "0",
        "4095",
        "65535",
        "65536",
        "99999999999999999999",
        "-",
        "^",
        "*",
        "/",
        "x",
        "z",
        "t",
        "r",
        "R",
        "T",
        "@",
        "conf",
        "conf:",
        "extmem",
        "extmem:",
        "extmem=",
        "offset",
        "offset:",
        "offset=",
        "share:",
        "rings",
        "host_rings",
        "host-rings",
        "slots",
        "tx_rings",
        "rx_slots",
        "file",
        "if_num",
        "buf_size",
        "initial",
        "bits",
        "=",
        ",",
        "\0",
        " ",
    ];
    (0..rng.range(0, 15))
        .map(|_| TOKENS[rng.range(0, TOKENS.len() - 1)])
        .collect()
}

/// Any string at all: printable ASCII, control characters, the grammar's
/// punctuation and arbitrary Unicode scalar values, mixed.
fn any_string(rng: &mut Rng) -> String {
    (0..rng.range(0, 24))
        .map(|_| match rng.range(0, 3) {
            0 => char::from(rng.range(0x20, 0x7e) as u8),
            1 => char::from(rng.range(0, 0x7f) as u8),
            2 => char::from(b"{}:-^*/@=,"[rng.range(0, 9)]),
            _ => char::from_u32(rng.next_u64() as u32 % 0x11_0000).unwrap_or('\u{fffd}'),
        })
        .collect()
}

/// `n` characters drawn from `set`.
fn chars_of(rng: &mut Rng, set: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| char::from(set[rng.range(0, set.len() - 1)]))
        .collect()
}

/// `Some(f(rng))` half of the time.
fn maybe<T>(rng: &mut Rng, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
    (rng.next_u64() & 1 == 1).then(|| f(rng))
}

/// Names built from the grammar: always valid.
fn valid_name(rng: &mut Rng) -> String {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const LOWER_DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const ID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
    let prefix = ["", "netmap:", "vale0:", "valeB:", "emu:"][rng.range(0, 4)];
    let n = rng.range(0, 10);
    let port = chars_of(rng, LOWER, 1) + &chars_of(rng, LOWER_DIGITS, n);
    let pipe = maybe(rng, |rng| {
        let n = rng.range(1, 8);
        chars_of(rng, b"{}", 1) + &chars_of(rng, ID, n)
    })
    .unwrap_or_default();
    let rings = match rng.range(0, 4) {
        0 => String::new(),
        1 => "^".to_string(),
        2 => "*".to_string(),
        3 => format!("-{}", rng.range(0, 4094)),
        _ => format!("^{}", rng.range(0, 4094)),
    };
    let flags = maybe(rng, |rng| {
        let n = rng.range(1, 6);
        format!("/{}", chars_of(rng, b"xztrRT", n))
    })
    .unwrap_or_default();
    let mem = maybe(rng, |rng| format!("@{}", rng.range(1, u16::MAX as usize))).unwrap_or_default();
    let mut options = String::new();
    // extmem and offset may appear once each.
    let mut seen = (false, false);
    for _ in 0..rng.range(0, 2) {
        let r = rng.next_u64();
        let option = match rng.range(0, 5) {
            0 => format!("@conf:rings={},slots={}", r as u16, (r >> 16) as u32),
            1 => format!("@conf:tx-rings={},host_rx_rings={}", r as u16, (r >> 16) as u16),
            2 => format!("@offset={r}"),
            3 => format!("@offset:bits={},initial={r}", rng.next_u64()),
            4 => {
                let n = rng.range(1, 12);
                format!("@extmem={}", chars_of(rng, b"abcdefghijklmnopqrstuvwxyz/", n))
            }
            _ => {
                let n = rng.range(1, 12);
                let file = chars_of(rng, b"abcdefghijklmnopqrstuvwxyz/", n);
                format!("@extmem:buf_num={},file={file}", r as u32)
            }
        };
        let slot = if option.starts_with("@extmem") {
            &mut seen.0
        } else if option.starts_with("@offset") {
            &mut seen.1
        } else {
            options.push_str(&option);
            continue;
        };
        if !std::mem::replace(slot, true) {
            options.push_str(&option);
        }
    }
    format!("{prefix}{port}{pipe}{rings}{flags}{mem}{options}")
}

/// What every result must satisfy; a failure names the input.
fn check(name: &str) {
    match parse(name) {
        Ok(spec) => {
            assert_eq!(parse(&spec.text).ok(), Some(spec.clone()), "{name:?}");
            assert!(spec.text.ends_with(name), "{name:?}");
            assert!(!spec.nr_name.is_empty() && spec.nr_name.len() < 64, "{name:?}");
            assert!(spec.nr_name.starts_with(&spec.ifname), "{name:?}");
        }
        Err(Error::InvalidPortSpec {
            spec,
            position,
            expected,
        }) => {
            assert_eq!(spec, name);
            assert!(position <= name.len(), "{name:?}: {position} > {}", name.len());
            assert!(!expected.is_empty(), "{name:?}");
        }
        Err(other) => panic!("{name:?}: unexpected error {other:?}"),
    }
}

/// Inputs each property test tries; the generator's seed is fixed, so a
/// failure reproduces.
const CASES: usize = 2000;

#[test]
fn never_panics_on_any_string() {
    let mut rng = Rng::new(1);
    for _ in 0..CASES {
        check(&any_string(&mut rng));
    }
}

#[test]
fn never_panics_on_grammar_soup() {
    let mut rng = Rng::new(2);
    for _ in 0..CASES {
        check(&grammar_soup(&mut rng));
    }
}

#[test]
fn valid_names_parse_and_round_trip() {
    let mut rng = Rng::new(3);
    for _ in 0..CASES {
        let name = valid_name(&mut rng);
        let spec = parse(&name);
        assert!(spec.is_ok(), "{name}: {spec:?}");
        check(&name);
    }
}
