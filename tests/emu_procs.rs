//! The embedded kernel across processes: the two ends of an `emu:` pipe, or
//! two ports of an `emu:` VALE switch, in two processes (this test binary,
//! re-executed as a child that runs the [`child`] test with a role), with
//! packets checksummed and counted both ways; a peer killed with SIGKILL;
//! another user kept out; mio readiness across processes; `pkt_gen` in two
//! processes as an unprivileged user.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;
use netmap_test_support::packets::fnv1a;
use netmap_test_support::skip::skip;

/// Set in a child: what it does, on which port, with which argument.
const ROLE: &str = "NETMAP_RS_EMU_PROCS_ROLE";
const PORT: &str = "NETMAP_RS_EMU_PROCS_PORT";
const ARG: &str = "NETMAP_RS_EMU_PROCS_ARG";
/// How long any exchange may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(60);
/// The unprivileged user of the permission tests.
const NOBODY: u32 = 65534;

/// Frames in flight one way, at most: far below a ring's 1023 free slots,
/// so that a VALE switch, which drops what a full ring cannot take, never
/// has to.
const WINDOW: u64 = 256;
/// A receiver acknowledges at least every this many frames.
const ACK_EVERY: u64 = 32;
/// The sequence number of a frame that only acknowledges.
const ACK_ONLY: u64 = u64::MAX;

/// A frame of session `session` from station `me` (the last byte of its
/// source address; broadcast destination): `seq`, the count of frames
/// received so far (`ack`), a checksum, and `seq`-dependent filler, 60 to
/// 1400 bytes.
fn frame(buf: &mut Vec<u8>, session: u32, me: u8, seq: u64, ack: u64) {
    let len = if seq == ACK_ONLY {
        60
    } else {
        60 + (seq as usize * 37) % 1340
    };
    buf.clear();
    buf.extend_from_slice(&[0xff; 6]);
    buf.extend_from_slice(&[2, 0, 0, 0, 0, me]);
    buf.extend_from_slice(&[0x88, 0xb5]);
    buf.extend_from_slice(&session.to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&ack.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend((0..len - buf.len()).map(|i| (seq as usize).wrapping_add(i) as u8));
    let sum = fnv1a(&buf[18..34]) ^ fnv1a(&buf[38..]);
    buf[34..38].copy_from_slice(&sum.to_le_bytes());
}

/// `(seq, ack)` of a frame of `session`, `None` for another session's
/// (stale frames of an earlier peer), or what is wrong with it.
fn parse(p: &[u8], session: u32) -> Result<Option<(u64, u64)>, String> {
    if p.len() < 60 || p[12..14] != [0x88, 0xb5] {
        return Err(format!("a foreign frame of {} bytes", p.len()));
    }
    if u32::from_le_bytes(p[14..18].try_into().unwrap()) != session {
        return Ok(None);
    }
    let word = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().unwrap());
    let (seq, ack) = (word(18), word(26));
    let sum = u32::from_le_bytes(p[34..38].try_into().unwrap());
    if sum != fnv1a(&p[18..34]) ^ fnv1a(&p[38..]) {
        return Err(format!("frame {seq} is corrupt"));
    }
    let len = if seq == ACK_ONLY {
        60
    } else {
        60 + (seq as usize * 37) % 1340
    };
    if p.len() != len {
        return Err(format!("frame {seq} is {} bytes, sent {len}", p.len()));
    }
    Ok(Some((seq, ack)))
}

/// Sends `total` frames to the peer on `port` and receives `total` from
/// it, in order and intact, with at most [`WINDOW`] unacknowledged; waits
/// in `Netmap::poll` whenever nothing moved. Returns once both sides have
/// all, and the peer knows it. Station 2, which opens its port second,
/// says hello first; station 1 sends once it has heard from the peer (a
/// switch floods a frame to the ports that exist when it is sent).
fn exchange(port: &Netmap, session: u32, me: u8, total: u64) -> Result<(), String> {
    let err = |e: Error| e.to_string();
    let mut tx = port.tx_ring(0).map_err(err)?;
    let mut rx = port.rx_ring(0).map_err(err)?;
    let (mut sent, mut got, mut acked, mut told) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    let (mut heard, mut hello) = (me == 2, me == 2);
    let start = Instant::now();
    while !(got == total && acked == total && told == total) {
        if start.elapsed() > PATIENCE {
            return Err(format!(
                "stalled: sent {sent}, got {got}, acked {acked}, told {told}"
            ));
        }
        let mut moved = false;
        rx.sync().map_err(err)?;
        while let Some(f) = rx.recv() {
            moved = true;
            let Some((seq, ack)) = parse(f.payload(), session)? else {
                continue;
            };
            if f.payload()[11] == me {
                return Err("a frame of our own came back".into());
            }
            heard = true;
            if seq != ACK_ONLY {
                if seq != got {
                    return Err(format!("frame {seq} arrived when {got} was due"));
                }
                got += 1;
            }
            acked = acked.max(ack.min(sent));
        }
        while heard && sent < total && sent - acked < WINDOW && tx.space() > 0 {
            frame(&mut buf, session, me, sent, got);
            tx.send(&buf).map_err(err)?;
            told = got;
            sent += 1;
            moved = true;
        }
        let owed = got - told;
        if (hello || owed >= ACK_EVERY || (got == total && owed > 0)) && tx.space() > 0 {
            hello = false;
            frame(&mut buf, session, me, ACK_ONLY, got);
            tx.send(&buf).map_err(err)?;
            told = got;
            moved = true;
        }
        tx.sync().map_err(err)?;
        if !moved {
            port.poll(Some(Duration::from_millis(200))).map_err(err)?;
        }
    }
    Ok(())
}

/// A command that re-runs this test binary as a child of role `role` on
/// `port`.
fn child_cmd(exe: &Path, role: &str, port: &str, arg: &str) -> Command {
    let mut c = Command::new(exe);
    c.args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(PORT, port)
        .env(ARG, arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn spawn(role: &str, port: &str, arg: &str) -> Child {
    child_cmd(&std::env::current_exe().unwrap(), role, port, arg)
        .spawn()
        .unwrap()
}

/// Waits for `child` (killing it after `PATIENCE`) and fails unless it
/// passed.
fn expect_success(child: Child, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    let mut child = child;
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "{what} failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The role of a child, run when [`ROLE`] is set (else nothing: this test
/// only exists to be re-run).
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let port = std::env::var(PORT).unwrap();
    let arg: u64 = std::env::var(ARG).unwrap().parse().unwrap();
    let session = arg as u32;
    match role.as_str() {
        "exchange" => {
            let p = NetmapBuilder::new(&port).build().unwrap();
            exchange(&p, session, 2, arg >> 32).unwrap();
        }
        "stream" => stream(&port, session),
        "serve" => {
            // Holds the port until its standard input closes, then leaves.
            let _p = NetmapBuilder::new(&port).build().unwrap();
            println!("holding");
            let _ = std::io::stdin().read_line(&mut String::new());
        }
        "pong" => {
            // Answers one frame with its own bytes.
            let p = NetmapBuilder::new(&port).build().unwrap();
            let (mut tx, mut rx) = (p.tx_ring(0).unwrap(), p.rx_ring(0).unwrap());
            let t = Instant::now();
            loop {
                assert!(t.elapsed() < PATIENCE, "no frame to answer");
                p.poll(Some(Duration::from_millis(100))).unwrap();
                rx.sync().unwrap();
                if let Some(f) = rx.recv() {
                    tx.send(f.payload()).unwrap();
                    break;
                }
            }
            tx.sync().unwrap();
        }
        "hold" => {
            let _p = NetmapBuilder::new(&port).build().unwrap();
            println!("holding");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "new-port" => drop(netmap_rs::vale::new_port(&port, &Default::default()).unwrap()),
        "touch" => drop(NetmapBuilder::new(&port).build().unwrap()),
        "refused" => match NetmapBuilder::new(&port).build() {
            Err(e @ Error::PermissionDenied { .. }) => {
                assert!(e.to_string().contains("belongs to another user"), "{e}");
                println!("refused: {e}");
            }
            other => panic!("uid {} got {other:?}", unsafe_getuid()),
        },
        "bad-dir" => {
            // arg 0: NETMAP_RS_EMU_DIR names no directory; 1: one this
            // user cannot write.
            let e = NetmapBuilder::new(&port).build().unwrap_err();
            let dir = std::env::var("NETMAP_RS_EMU_DIR").unwrap();
            let text = e.to_string();
            match arg {
                0 => assert!(
                    matches!(e, Error::Io { .. }) && text.contains(&format!("{dir} does not exist")),
                    "{e:?}: {text}"
                ),
                _ => assert!(
                    matches!(e, Error::PermissionDenied { .. })
                        && text.contains(&format!("cannot create the embedded kernel's regions in {dir}")),
                    "{e:?}: {text}"
                ),
            }
            assert!(text.contains("set NETMAP_RS_EMU_DIR"), "{text}");
        }
        #[cfg(feature = "mio")]
        "mio-echo" => mio_echo(&port, arg),
        other => panic!("unknown role {other}"),
    }
}

/// Sends and receives for ever, until killed.
fn stream(port: &str, session: u32) {
    let p = NetmapBuilder::new(port).build().unwrap();
    let (mut tx, mut rx) = (p.tx_ring(0).unwrap(), p.rx_ring(0).unwrap());
    let mut buf = Vec::new();
    for seq in 0.. {
        if tx.space() == 0 {
            tx.sync().unwrap();
            rx.sync().unwrap();
            let _ = rx.iter().count();
            p.poll_writable(Some(Duration::from_millis(100))).unwrap();
            continue;
        }
        frame(&mut buf, session, 2, seq, 0);
        tx.send(&buf).unwrap();
    }
}

fn unsafe_getuid() -> u32 {
    // SAFETY: getuid takes nothing and cannot fail.
    unsafe { libc::getuid() }
}

/// A name of this process's own for `what`.
fn unique(what: &str) -> String {
    format!("{what}{}", std::process::id())
}

/// The region files (and their FIFOs) of parent `parent` left in the
/// embedded kernel's directory.
fn leftovers(parent: &str) -> Vec<PathBuf> {
    let dir = netmap_rs::emu_dir();
    let name = format!("netmap-rs-emu.{parent}");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n == name || n.starts_with(&format!("{name}@"))
        })
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_pipe_carries_a_million_packets_each_way_between_processes() {
    let parent = unique("xpipe");
    let total = 1_000_000u64;
    let session = 0x5eed_0001u32;
    // The slave end first (either end makes the pair): the child opens
    // the master end after it.
    let slave = NetmapBuilder::new(&format!("emu:{parent}}}1")).build().unwrap();
    let child = spawn(
        "exchange",
        &format!("emu:{parent}{{1"),
        &((total << 32) | u64::from(session)).to_string(),
    );
    let t = Instant::now();
    exchange(&slave, session, 1, total).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!("{total} packets each way in {secs:.2} s");
    expect_success(child, "the child");
    drop(slave);
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
}

#[test]
fn a_vale_switch_carries_a_million_packets_each_way_between_processes() {
    let switch = format!("vale{}", std::process::id());
    let total = 1_000_000u64;
    let session = 0x5eed_0002u32;
    let a = NetmapBuilder::new(&format!("emu:{switch}:a")).build().unwrap();
    let child = spawn(
        "exchange",
        &format!("emu:{switch}:b"),
        &((total << 32) | u64::from(session)).to_string(),
    );
    exchange(&a, session, 1, total).unwrap();
    expect_success(child, "the child");
    drop(a);
    assert_eq!(leftovers(&switch), Vec::<PathBuf>::new());
}

#[test]
fn switch_ports_take_their_own_shapes_from_conf() {
    let switch = format!("valeconf{}", std::process::id());
    let a = NetmapBuilder::new(&format!("emu:{switch}:a@conf:rings=2,slots=256"))
        .build()
        .unwrap();
    let b = NetmapBuilder::new(&format!("emu:{switch}:b")).build().unwrap();
    assert_eq!(
        (a.num_tx_rings(), a.num_rx_rings(), a.num_slots()),
        (2, 2, (256, 256))
    );
    assert_eq!((b.num_tx_rings(), b.num_rx_rings()), (1, 1));
    // A broadcast sent on a's second ring reaches b's only ring.
    let mut f = [0u8; 60];
    f[..6].fill(0xff);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    {
        let mut tx = a.tx_ring(1).unwrap();
        tx.send(&f).unwrap();
        tx.sync().unwrap();
    }
    {
        let mut rx = b.rx_ring(0).unwrap();
        assert_eq!(rx.sync().unwrap(), 1);
        assert_eq!(rx.recv().unwrap().payload(), &f[..]);
    }
    drop((a, b));
    assert_eq!(leftovers(&switch), Vec::<PathBuf>::new());
}

#[test]
fn a_peer_killed_mid_stream_leaves_a_working_port_and_nothing_behind() {
    let parent = unique("xkill");
    let master = NetmapBuilder::new(&format!("emu:{parent}{{1")).build().unwrap();
    let slave = format!("emu:{parent}}}1");
    let mut victim = spawn("stream", &slave, &0x5eed_0003u64.to_string());
    // Take a few thousand of its packets, then kill it mid-stream.
    {
        let mut rx = master.rx_ring(0).unwrap();
        let mut n = 0;
        let t = Instant::now();
        while n < 5000 {
            assert!(t.elapsed() < PATIENCE, "the streaming child sent {n} packets");
            master.poll(Some(Duration::from_millis(200))).unwrap();
            rx.sync().unwrap();
            n += rx.iter().count();
        }
    }
    // SAFETY: kill on our own child's pid.
    assert_eq!(unsafe { libc::kill(victim.id() as i32, libc::SIGKILL) }, 0);
    victim.wait().unwrap();
    // The survivor's calls answer (an error or not), and never hang.
    let mut buf = Vec::new();
    for _ in 0..50 {
        let _ = master.poll(Some(Duration::from_millis(2)));
        let mut rx = master.rx_ring(0).unwrap();
        let _ = rx.sync();
        let _ = rx.iter().count();
        let mut tx = master.tx_ring(0).unwrap();
        frame(&mut buf, 0x5eed_0003, 1, 0, 0);
        let _ = tx.send(&buf);
        let _ = tx.sync();
    }
    // The dead peer's end is free again: a new peer binds it (exclusively,
    // as every port does by default) and the pipe works both ways.
    let session = 0x5eed_0004u32;
    let child = spawn(
        "exchange",
        &slave,
        &((10_000u64 << 32) | u64::from(session)).to_string(),
    );
    let done = exchange(&master, session, 1, 10_000);
    expect_success(child, "the second peer");
    done.unwrap();
    drop(master);
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
}

#[test]
fn what_a_crashed_process_left_is_swept_by_the_next_process() {
    use std::io::{BufRead, BufReader};
    let parent = unique("xsweep");
    let mut holder = spawn("hold", &format!("emu:{parent}{{1"), "0");
    let out = BufReader::new(holder.stdout.take().unwrap());
    assert!(out.lines().map_while(Result::ok).any(|l| l.contains("holding")));
    // SAFETY: kill on our own child's pid.
    assert_eq!(unsafe { libc::kill(holder.id() as i32, libc::SIGKILL) }, 0);
    holder.wait().unwrap();
    assert_eq!(leftovers(&parent).len(), 2, "the dead process's region and FIFO");
    // Any process that opens an embedded port sweeps what no one uses.
    expect_success(
        spawn("touch", &format!("emu:{}", unique("xsweep_other")), "0"),
        "the next process",
    );
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
}

#[test]
fn a_persistent_switch_port_outlives_the_process_that_made_it() {
    let switch = format!("vale{}p", std::process::id());
    let port = format!("emu:{switch}:kept");
    expect_success(spawn("new-port", &port, "0"), "the maker");
    // Kept, and not swept by the next process either.
    expect_success(
        spawn("touch", &format!("emu:{}", unique("xkeep_other")), "0"),
        "the next process",
    );
    assert_eq!(leftovers(&switch).len(), 1, "the switch's region");
    let listed = netmap_rs::vale::list(&format!("emu:{switch}")).unwrap();
    assert_eq!(
        listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        [port.as_str()]
    );
    let p = NetmapBuilder::new(&port).build().unwrap();
    assert_eq!(p.num_slots(), (1024, 1024));
    drop(p);
    netmap_rs::vale::delete_port(&port).unwrap();
    assert_eq!(leftovers(&switch), Vec::<PathBuf>::new());
}

#[test]
fn a_missing_or_unwritable_directory_is_named_with_what_to_do() {
    let test = "a_missing_or_unwritable_directory_is_named_with_what_to_do";
    let port = format!("emu:{}}}1", unique("baddir"));
    let exe = std::env::current_exe().unwrap();
    let missing = child_cmd(&exe, "bad-dir", &port, "0")
        .env("NETMAP_RS_EMU_DIR", "/nonexistent/netmap-rs")
        .spawn()
        .unwrap();
    expect_success(missing, "the child given a missing directory");
    // Root writes anywhere: the unwritable directory needs another user.
    let Some((bin, dir)) = exe_for_nobody(test, &exe) else {
        return;
    };
    let ro = dir.0.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let unwritable = child_cmd(&bin, "bad-dir", &port, "1")
        .env("NETMAP_RS_EMU_DIR", &ro)
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .unwrap();
    expect_success(unwritable, "the child given a directory it cannot write");
}

/// Copies this test binary to a directory `NOBODY` can read, so that a
/// child can run it as that user; `None` (after saying why) when this
/// process may not switch users.
fn exe_for_nobody(test: &str, exe: &Path) -> Option<(PathBuf, tempdir::Dir)> {
    if unsafe_getuid() != 0 {
        skip(test, "switching to uid 65534 needs root");
        return None;
    }
    let dir = tempdir::Dir::new();
    let copy = dir.0.join(exe.file_name().unwrap());
    std::fs::copy(exe, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((copy, dir))
}

mod tempdir {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A directory under the system's temporary one, readable by all,
    /// removed on drop.
    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!("netmap-rs-emu-procs-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn another_user_cannot_open_a_users_region() {
    let test = "another_user_cannot_open_a_users_region";
    let Some((exe, _dir)) = exe_for_nobody(test, &std::env::current_exe().unwrap()) else {
        return;
    };
    let parent = unique("xuid");
    let master = NetmapBuilder::new(&format!("emu:{parent}{{1")).build().unwrap();
    let files = leftovers(&parent);
    assert_eq!(files.len(), 2, "the region and one FIFO: {files:?}");
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let mut c = child_cmd(&exe, "refused", &format!("emu:{parent}}}1"), "0");
    c.uid(NOBODY).gid(NOBODY);
    expect_success(c.spawn().unwrap(), "uid 65534's open");
    // The refused user left nothing, and the owner's pipe still works.
    assert_eq!(leftovers(&parent).len(), 2);
    let slave = NetmapBuilder::new(&format!("emu:{parent}}}1")).build().unwrap();
    let mut tx = master.tx_ring(0).unwrap();
    tx.send(&[7; 60]).unwrap();
    tx.sync().unwrap();
    let mut rx = slave.rx_ring(0).unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), &[7; 60]);
}

#[test]
fn a_region_shared_with_a_group_opens_for_its_members() {
    use std::io::{BufRead, BufReader};
    let test = "a_region_shared_with_a_group_opens_for_its_members";
    let Some((exe, _dir)) = exe_for_nobody(test, &std::env::current_exe().unwrap()) else {
        return;
    };
    let parent = unique("xgroup");
    // The owner (this user) makes the region for group 65534, in a child,
    // since the variable would reach the other tests' ports here.
    let mut owner = child_cmd(&exe, "serve", &format!("emu:{parent}{{1"), "0");
    owner
        .env("NETMAP_RS_EMU_GROUP", NOBODY.to_string())
        .stdin(Stdio::piped());
    let mut owner = owner.spawn().unwrap();
    let out = BufReader::new(owner.stdout.take().unwrap());
    assert!(out.lines().map_while(Result::ok).any(|l| l.contains("holding")));
    for f in leftovers(&parent) {
        let meta = std::fs::metadata(&f).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660, "{}", f.display());
        assert_eq!(
            std::os::unix::fs::MetadataExt::gid(&meta),
            NOBODY,
            "{}",
            f.display()
        );
    }
    // A member of the group (not the owner) opens the other end and
    // answers a frame: memory, lock and FIFOs are shared.
    let mut member = child_cmd(&exe, "pong", &format!("emu:{parent}}}3"), "0");
    member.uid(NOBODY + 1).gid(NOBODY);
    let member = member.spawn().unwrap();
    let ping = NetmapBuilder::new(&format!("emu:{parent}{{3")).build().unwrap();
    let (mut tx, mut rx) = (ping.tx_ring(0).unwrap(), ping.rx_ring(0).unwrap());
    let mut buf = Vec::new();
    frame(&mut buf, 9, 1, 0, 0);
    tx.send(&buf).unwrap();
    tx.sync().unwrap();
    let t = Instant::now();
    loop {
        assert!(t.elapsed() < PATIENCE, "no answer from the group member");
        ping.poll(Some(Duration::from_millis(100))).unwrap();
        rx.sync().unwrap();
        if let Some(f) = rx.recv() {
            assert_eq!(f.payload(), buf.as_slice());
            break;
        }
    }
    expect_success(member, "the group member");
    drop((tx, rx));
    drop(ping);
    drop(owner.stdin.take());
    owner.wait().unwrap();
}

#[test]
fn pkt_gen_runs_in_two_processes_as_an_unprivileged_user() {
    let test = "pkt_gen_runs_in_two_processes_as_an_unprivileged_user";
    let Some(bin) = netmap_test_support::examples::binary(test, "pkt_gen") else {
        return;
    };
    let Some((bin, _dir)) = exe_for_nobody(test, &bin) else {
        return;
    };
    let parent = unique("xpktgen");
    let nobody = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let rx_name = format!("emu:{parent}}}1");
    let tx_name = format!("emu:{parent}{{1");
    // The receiver first, as in two shells: `pkt_gen -i 'emu:x}1' -f rx`,
    // then `pkt_gen -i 'emu:x{1' -f tx`.
    let rx = nobody(&["-i", &rx_name, "-f", "rxseq", "-n", "200000"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let tx = nobody(&["-i", &tx_name, "-f", "txseq", "-n", "200000"])
        .spawn()
        .unwrap();
    let rx = rx.wait_with_output().unwrap();
    let tx = tx.wait_with_output().unwrap();
    let (rx_out, rx_err) = (
        String::from_utf8_lossy(&rx.stdout),
        String::from_utf8_lossy(&rx.stderr),
    );
    assert!(rx.status.success(), "rx: {rx_out}\n{rx_err}");
    assert!(tx.status.success(), "tx: {}", String::from_utf8_lossy(&tx.stderr));
    assert!(
        rx_out.contains("Sequence: 200000 packets checked, 0 lost, 0 out of order, 0 too short."),
        "rx: {rx_out}\n{rx_err}"
    );
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
}

/// The child of the mio ping-pong: echoes `rounds` frames back, waking only
/// on readiness.
#[cfg(feature = "mio")]
fn mio_echo(port: &str, rounds: u64) {
    use mio::{Events, Interest, Poll, Token};
    let mut p = NetmapBuilder::new(port).build().unwrap();
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut p, Token(0), Interest::READABLE)
        .unwrap();
    let (mut tx, mut rx) = (p.tx_ring(0).unwrap(), p.rx_ring(0).unwrap());
    let mut events = Events::with_capacity(4);
    let mut done = 0;
    while done < rounds {
        poll.poll(&mut events, Some(PATIENCE)).unwrap();
        assert!(!events.is_empty(), "no ping within {PATIENCE:?} after {done}");
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            tx.send(f.payload()).unwrap();
            done += 1;
        }
        tx.sync().unwrap();
    }
}

#[cfg(feature = "mio")]
#[test]
fn mio_ping_pong_across_processes() {
    use mio::{Events, Interest, Poll, Token};
    let parent = unique("xmio");
    let rounds = 20_000u64;
    let mut a = NetmapBuilder::new(&format!("emu:{parent}{{1")).build().unwrap();
    let child = spawn("mio-echo", &format!("emu:{parent}}}1"), &rounds.to_string());
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut a, Token(0), Interest::READABLE)
        .unwrap();
    let (mut tx, mut rx) = (a.tx_ring(0).unwrap(), a.rx_ring(0).unwrap());
    let mut events = Events::with_capacity(4);
    let mut buf = Vec::new();
    // The child's end may not be bound yet: what is sent before it binds
    // waits in its ring, as in the module.
    let t = Instant::now();
    let (mut pongs, mut wakeups) = (0u64, 0u64);
    frame(&mut buf, 7, 1, 0, 0);
    tx.send(&buf).unwrap();
    tx.sync().unwrap();
    while pongs < rounds {
        poll.poll(&mut events, Some(PATIENCE)).unwrap();
        assert!(!events.is_empty(), "no pong within {PATIENCE:?} after {pongs}");
        wakeups += 1;
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            assert_eq!(parse(f.payload(), 7), Ok(Some((pongs, 0))));
            pongs += 1;
        }
        if pongs < rounds {
            frame(&mut buf, 7, 1, pongs, 0);
            tx.send(&buf).unwrap();
            tx.sync().unwrap();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{rounds} round trips across processes in {secs:.2} s ({:.1} us each), {wakeups} wakeups",
        secs * 1e6 / rounds as f64
    );
    // One wakeup a round trip, give or take a spurious one: no busy waiting.
    assert!(
        wakeups <= rounds * 2,
        "{wakeups} wakeups for {rounds} round trips"
    );
    expect_success(child, "the echoing child");
}
