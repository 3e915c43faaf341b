//! A network namespace with a veth pair, for tests that move real packets.
//!
//! [`Netns::new`] creates a uniquely named namespace (`nmrs-t<pid>-<n>`),
//! a veth pair `va` <-> `vb` inside it, with IPv6 off on both (no router
//! solicitations or DAD probes: the only frames on the wire are the test's
//! own), both up. [`Netns::enter`] moves the *calling thread* into it
//! (`setns(CLONE_NEWNET)`) until the returned guard drops; sockets opened on
//! that thread stay in the namespace wherever they go afterwards, so open
//! every port on the test thread and move the ports into helper threads.
//! Dropping the [`Netns`] deletes the namespace, and the veth pair with it,
//! also when the test panics. Namespaces left behind by a killed test run
//! (whose process is gone) are deleted by the next run.
//!
//! Only interfaces inside these namespaces ever see the tests' traffic.
//!
//! Without root, or without the `ip` tool, [`Netns::new`] prints why and
//! returns `None`, and the test returns early; in CI it panics instead
//! ([`crate::skip`]).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The veth ends every namespace gets.
pub const A: &str = "va";
pub const B: &str = "vb";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace that is deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// The calling thread is inside a namespace until this drops.
#[derive(Debug)]
pub struct Entered {
    home: File,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn skip(test: &str, why: &str) -> Option<Netns> {
    crate::skip::skip(test, why);
    None
}

/// Deletes namespaces of earlier runs whose process no longer exists.
fn sweep() {
    let Ok(dir) = std::fs::read_dir("/run/netns").or_else(|_| std::fs::read_dir("/var/run/netns")) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("nmrs-t") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

fn write_sysctl(path: &str, value: &str) -> Result<(), String> {
    match std::fs::write(path, value) {
        Ok(()) => Ok(()),
        // No IPv6 in this kernel: nothing to silence.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("writing {path}: {e}")),
    }
}

impl Netns {
    /// Creates the namespace and its veth pair, or says why it cannot (and
    /// returns `None`) when not root or `ip` is missing.
    pub fn new(test: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip(
                test,
                "needs root (CAP_NET_ADMIN to create a network namespace and veth pair, \
                 CAP_NET_RAW for AF_PACKET); run `sudo -E cargo test --test afpacket`",
            );
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return skip(test, "the `ip` tool (iproute2) is not installed");
        }
        sweep();
        let name = format!(
            "nmrs-t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = ip(&["netns", "add", &name]) {
            return skip(test, &format!("cannot create a network namespace: {e}"));
        }
        let ns = Netns { name };
        if let Err(e) = ns.setup() {
            // `ns` drops here and deletes what was made.
            panic!("{test}: setting up {}: {e}", ns.name);
        }
        Some(ns)
    }

    fn setup(&self) -> Result<(), String> {
        let n = self.name.as_str();
        {
            // New devices inherit `default`: turn IPv6 off before they exist.
            let _inside = self.enter();
            write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")?;
            write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")?;
        }
        ip(&["-n", n, "link", "add", A, "type", "veth", "peer", "name", B])?;
        {
            let _inside = self.enter();
            for dev in [A, B] {
                write_sysctl(&format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1")?;
            }
        }
        for dev in [A, B] {
            ip(&["-n", n, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// The namespace's name (for `ip -n NAME ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...` (for example to bring a link down).
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Moves the calling thread into the namespace until the guard drops.
    pub fn enter(&self) -> Entered {
        let home = File::open("/proc/thread-self/ns/net").expect("open this thread's network namespace");
        // iproute2 keeps named namespaces in /run/netns (/var/run/netns
        // where /var/run is not a link to /run).
        let target = File::open(format!("/run/netns/{}", self.name))
            .or_else(|_| File::open(format!("/var/run/netns/{}", self.name)))
            .expect("open the test namespace");
        // SAFETY: both are namespace file descriptors that live across the
        // call; setns affects only the calling thread.
        let r = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        Entered { home }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: `home` is the namespace file this thread came from.
        unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair in it (once the last
        // socket in it closes).
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}
