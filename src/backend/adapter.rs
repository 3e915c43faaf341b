//! Whether netmap runs an interface with a native driver or through its
//! generic (emulated) adapter, as the module decides it in
//! `netmap_get_hw_na`:
//!
//! * an interface is native when its driver called `netmap_attach`, which
//!   only netmap's own builds of a few drivers do (`LINUX/configure`'s
//!   `driver_avail`: [`NATIVE_DRIVERS`]). Such a build is a module that
//!   uses `netmap.ko`'s symbols, so Linux lists it under
//!   `/sys/module/netmap/holders/`; the stock module of the same name does
//!   not use netmap and is not listed;
//! * the module's `admode` parameter (`/sys/module/netmap/parameters/admode`)
//!   then picks: 0 (the default) native if there is one, else generic; 1
//!   native or nothing (a REGISTER is `EOPNOTSUPP`); 2 generic always
//!   (unless a native adapter is already in use).
//!
//! Everything here is read from sysfs and `ETHTOOL_GDRVINFO`, without
//! opening `/dev/netmap`.

use std::path::Path;

use crate::backend::afpacket;

/// The drivers netmap's Linux build can patch for native support, as
/// `LINUX/configure` lists them, each with the names Linux gives its
/// driver (ethtool's `driver:`) or module.
pub(crate) const NATIVE_DRIVERS: &[(&str, &[&str])] = &[
    ("e1000", &["e1000"]),
    ("e1000e", &["e1000e"]),
    ("igb", &["igb"]),
    ("igc", &["igc"]),
    ("ixgbe", &["ixgbe"]),
    ("ixgbevf", &["ixgbevf"]),
    ("i40e", &["i40e"]),
    ("ice", &["ice"]),
    ("vmxnet3", &["vmxnet3"]),
    ("mlx5", &["mlx5_core"]),
    ("r8169", &["r8169"]),
    ("virtio_net", &["virtio_net"]),
    ("forcedeth", &["forcedeth"]),
    ("veth", &["veth"]),
    ("stmmac", &["stmmac", "st_gmac", "st_mac100", "stmmaceth"]),
    // Not a driver of its own: netmap.ko's sink device (`--enable-sink`).
    ("sink", &["nmsink"]),
];

/// The prefix of the sink devices that netmap.ko itself makes native
/// (`nmsink0`...), whose driver reports nothing through ethtool.
const SINK: &str = "nmsink";

/// netmap's name for the driver Linux calls `name`, if netmap has a
/// native version of it.
pub(crate) fn netmap_driver(name: &str) -> Option<&'static str> {
    NATIVE_DRIVERS
        .iter()
        .find(|(_, names)| names.contains(&name))
        .map(|(n, _)| *n)
}

/// What the host says of an interface's driver and of the netmap module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The driver's name for itself, if it gives one.
    pub(crate) driver: Option<String>,
    /// The kernel module that holds the driver, if it is a module.
    pub(crate) module: Option<String>,
    /// Whether `netmap.ko` is loaded.
    pub(crate) netmap_loaded: bool,
    /// Whether `module` uses `netmap.ko` (is listed as its holder).
    pub(crate) uses_netmap: bool,
    /// The module's `admode`, when it is loaded and says.
    pub(crate) admode: Option<u32>,
}

/// Reads the facts of interface `name` from this host.
pub(crate) fn facts(name: &str) -> Facts {
    facts_in(Path::new("/sys"), name, afpacket::driver_name(name).ok())
}

/// The facts of `name`, from the sysfs at `sys` and the driver name
/// ethtool gave (a parameter, so that tests can use a made-up sysfs).
pub(crate) fn facts_in(sys: &Path, name: &str, ethtool: Option<String>) -> Facts {
    let dev = sys.join("class/net").join(name).join("device/driver");
    let base = |p: &Path| {
        std::fs::read_link(p)
            .ok()
            .and_then(|t| t.file_name().map(|f| f.to_string_lossy().into_owned()))
    };
    let netmap = sys.join("module/netmap");
    let netmap_loaded = netmap.is_dir();
    let sink = name.starts_with(SINK) && netmap_loaded;
    let driver = ethtool
        .filter(|d| !d.is_empty())
        .or_else(|| base(&dev))
        .or_else(|| sink.then(|| SINK.into()));
    // A bus device's driver names its module; a virtual one's driver
    // (veth) is its module's name.
    let module = base(&dev.join("module")).or_else(|| {
        if sink {
            return Some("netmap".into());
        }
        driver
            .as_ref()
            .filter(|d| sys.join("module").join(d).is_dir())
            .cloned()
    });
    let uses_netmap = sink
        || module
            .as_ref()
            .is_some_and(|m| netmap.join("holders").join(m).exists());
    let admode = std::fs::read_to_string(netmap.join("parameters/admode"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Facts {
        driver,
        module,
        netmap_loaded,
        uses_netmap,
        admode,
    }
}

/// How the module would run an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// With its native driver.
    Native,
    /// Through the generic adapter.
    Generic,
    /// Not at all: admode 1 and no native driver (`EOPNOTSUPP`).
    Refused,
    /// The module is not loaded: nothing is decided yet.
    NotLoaded,
}

impl Facts {
    /// Whether the interface has a native netmap adapter now, and why (or
    /// why not), in words.
    pub(crate) fn native(&self) -> (bool, String) {
        let Some(driver) = &self.driver else {
            return (
                false,
                "its device reports no driver (as the loopback does); netmap has no native \
                 driver for it"
                    .into(),
            );
        };
        let Some(ours) = netmap_driver(driver) else {
            return (false, format!("netmap has no native driver for {driver}"));
        };
        let build = format!("netmap's build of {ours} (`./configure --drivers={ours}`)");
        match (&self.module, self.netmap_loaded) {
            (Some(m), true) if m == "netmap" && self.uses_netmap => {
                (true, "netmap.ko's own sink device (`--enable-sink`)".into())
            }
            (Some(m), true) if self.uses_netmap => (
                true,
                format!("the loaded {m} module is {build}: it uses netmap.ko"),
            ),
            (Some(m), true) => (
                false,
                format!(
                    "the loaded {m} module is the stock one (it does not use netmap.ko); load \
                     {build} instead for native mode"
                ),
            ),
            (None, true) => (
                false,
                format!("{driver} is built into the kernel, so not {build}"),
            ),
            (_, false) => (
                false,
                format!(
                    "netmap.ko is not loaded; with {build} loaded after it, {driver} would be \
                     native"
                ),
            ),
        }
    }

    /// The mode the module would use for the interface, by its admode.
    pub(crate) fn mode(&self) -> Mode {
        let native = self.native().0;
        match (self.netmap_loaded, self.admode.unwrap_or(0), native) {
            (false, _, _) => Mode::NotLoaded,
            (true, 1, true) | (true, 0, true) => Mode::Native,
            (true, 1, false) => Mode::Refused,
            (true, 2, _) => Mode::Generic,
            // Out-of-range values are reset to 0 by the module.
            (true, _, true) => Mode::Native,
            (true, _, false) => Mode::Generic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A made-up sysfs under a fresh directory.
    struct Sys(std::path::PathBuf);

    impl Sys {
        fn new(tag: &str) -> Sys {
            let d = std::env::temp_dir().join(format!("netmap-rs-sys-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(d.join("class/net")).unwrap();
            Sys(d)
        }
        fn module(&self, m: &str) -> &Self {
            fs::create_dir_all(self.0.join("module").join(m)).unwrap();
            self
        }
        fn netmap(&self, admode: u32, holders: &[&str]) -> &Self {
            let n = self.0.join("module/netmap");
            fs::create_dir_all(n.join("parameters")).unwrap();
            fs::create_dir_all(n.join("holders")).unwrap();
            fs::write(n.join("parameters/admode"), format!("{admode}\n")).unwrap();
            for h in holders {
                self.module(h);
                symlink(self.0.join("module").join(h), n.join("holders").join(h)).unwrap();
            }
            self
        }
        /// A bus device `ifname` driven by `driver` of module `module`.
        fn bus_device(&self, ifname: &str, driver: &str, module: &str) -> &Self {
            let drv = self.0.join("bus/pci/drivers").join(driver);
            fs::create_dir_all(&drv).unwrap();
            self.module(module);
            symlink(self.0.join("module").join(module), drv.join("module")).unwrap();
            let dev = self.0.join("class/net").join(ifname).join("device");
            fs::create_dir_all(&dev).unwrap();
            symlink(&drv, dev.join("driver")).unwrap();
            self
        }
        fn facts(&self, ifname: &str, ethtool: Option<&str>) -> Facts {
            facts_in(&self.0, ifname, ethtool.map(Into::into))
        }
    }

    impl Drop for Sys {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn without_the_module_the_driver_decides_later() {
        let sys = Sys::new("nomod");
        sys.module("veth");
        let f = sys.facts("veth0", Some("veth"));
        assert_eq!(f.driver.as_deref(), Some("veth"));
        assert_eq!(f.module.as_deref(), Some("veth"));
        assert!(!f.netmap_loaded && f.admode.is_none());
        let (native, why) = f.native();
        assert!(!native);
        assert!(why.contains("netmap.ko is not loaded"), "{why}");
        assert!(why.contains("--drivers=veth"), "{why}");
        assert_eq!(f.mode(), Mode::NotLoaded);
        // The loopback: no driver.
        let lo = sys.facts("lo", None);
        assert_eq!((lo.driver.as_deref(), lo.module.as_deref()), (None, None));
        assert!(lo.native().1.contains("no driver"), "{}", lo.native().1);
    }

    #[test]
    fn netmaps_build_of_a_driver_is_native_and_admode_picks() {
        let sys = Sys::new("native");
        sys.netmap(0, &["e1000e"])
            .bus_device("eth0", "e1000e", "e1000e")
            .bus_device("eth1", "igb", "igb")
            .bus_device("eth2", "tg3", "tg3");
        let e = sys.facts("eth0", None);
        assert_eq!(e.driver.as_deref(), Some("e1000e"), "from the sysfs link");
        assert!(e.uses_netmap && e.native().0, "{}", e.native().1);
        assert_eq!(e.mode(), Mode::Native);
        let i = sys.facts("eth1", Some("igb"));
        let (native, why) = i.native();
        assert!(!native && why.contains("stock"), "{why}");
        assert_eq!(i.mode(), Mode::Generic);
        let t = sys.facts("eth2", Some("tg3"));
        assert_eq!(t.native().1, "netmap has no native driver for tg3");
        assert_eq!(t.mode(), Mode::Generic);
        // admode 1: native or nothing; 2: generic always.
        for (admode, e_mode, i_mode) in [
            (1, Mode::Native, Mode::Refused),
            (2, Mode::Generic, Mode::Generic),
        ] {
            let f = |fact: &Facts| Facts {
                admode: Some(admode),
                ..fact.clone()
            };
            assert_eq!((f(&e).mode(), f(&i).mode()), (e_mode, i_mode), "admode {admode}");
        }
        // A driver built into the kernel: no module to tell by.
        let b = Facts {
            module: None,
            uses_netmap: false,
            ..e.clone()
        };
        assert!(b.native().1.contains("built into the kernel"), "{}", b.native().1);
    }

    #[test]
    fn netmaps_sink_is_native_while_the_module_is_loaded() {
        let sys = Sys::new("sink");
        fs::create_dir_all(sys.0.join("class/net/nmsink0")).unwrap();
        assert_eq!(
            sys.facts("nmsink0", None).driver,
            None,
            "no module: nothing to say"
        );
        sys.netmap(0, &[]);
        let f = sys.facts("nmsink0", None);
        assert_eq!(
            (f.driver.as_deref(), f.module.as_deref()),
            (Some("nmsink"), Some("netmap"))
        );
        assert!(f.native().0 && f.native().1.contains("sink device"), "{f:?}");
        assert_eq!(f.mode(), Mode::Native);
    }

    #[test]
    fn linux_names_map_to_netmaps() {
        assert_eq!(netmap_driver("mlx5_core"), Some("mlx5"));
        assert_eq!(netmap_driver("virtio_net"), Some("virtio_net"));
        assert_eq!(netmap_driver("veth"), Some("veth"));
        assert_eq!(netmap_driver("loopback"), None);
    }
}
