//! The command-line examples as a user runs them: `bridge` with netmap's
//! `bridge` arguments, `ping_pong`'s run and its refusals, `probe`, `vale_ctl`, and the
//! command line of each (`--help` explains every flag and exits 0; a bad
//! argument exits 2 with the usage).
//!
//! Each test runs the example binary that `cargo test` builds beside the
//! tests; a run of this test target alone, without the examples, skips them
//! and says so.

use std::process::{Command, Output};

use netmap_test_support::examples;

/// Runs example `name` with `args` for `test`, or skips `test` when the
/// example is not built.
fn run(test: &str, name: &str, args: &[&str]) -> Option<Output> {
    let bin = examples::binary(test, name)?;
    Some(
        Command::new(bin)
            .args(args)
            .output()
            .expect("running the example"),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks for `test` that `name --help` (and `-h`) exits 0 with a usage on
/// stdout that names every one of `flags`, and that an unknown flag exits 2
/// with the error and the usage on stderr. Returns `false` when the example
/// is not built (`test` skipped).
fn help_and_bad_flag(test: &str, name: &str, flags: &[&str]) -> bool {
    let Some(help) = run(test, name, &["--help"]) else {
        return false;
    };
    assert!(help.status.success(), "{name} --help: {:?}", help.status);
    let usage = text(&help.stdout);
    assert!(usage.starts_with(&format!("usage: {name} ")), "{usage}");
    for flag in flags {
        assert!(
            usage.contains(flag),
            "{name} --help does not explain {flag}: {usage}"
        );
    }
    let short = run(test, name, &["-h"]).expect("built above");
    assert!(short.status.success(), "{name} -h: {:?}", short.status);
    assert_eq!(text(&short.stdout), usage, "{name} -h");
    let bad = run(test, name, &["--no-such-flag"]).expect("built above");
    assert_eq!(bad.status.code(), Some(2), "{name} --no-such-flag");
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("invalid option '--no-such-flag'"),
        "{name}: {stderr}"
    );
    assert!(stderr.contains(&usage), "{name}: no usage on stderr: {stderr}");
    assert!(bad.stdout.is_empty(), "{name}: {}", text(&bad.stdout));
    true
}

/// Checks that `name` with each of `cases`' arguments exits 2 saying its
/// reason.
fn refuses(name: &str, cases: &[(&[&str], &str)]) {
    for (args, why) in cases {
        let out = run(name, name, args).expect("built by the caller's first run");
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(why), "{name} {args:?}: {stderr}");
    }
}

#[test]
fn bridge_takes_its_ports_as_positional_arguments() {
    let Some(out) = run(
        "bridge_takes_its_ports_as_positional_arguments",
        "bridge",
        &["emu:tb{1", "emu:tb{2", "--demo", "20000"],
    ) else {
        return;
    };
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("zero-copy"), "{stdout}");
    assert!(
        stdout.contains("20000 frames sent, 20000 came through in order"),
        "{stdout}"
    );
}

#[test]
fn bridge_takes_ports_and_burst_with_flags_or_after_them() {
    for args in [
        &["-i", "emu:tc{1", "-i", "emu:tc{2", "-b", "64", "--demo", "5000"][..],
        &["-c", "emu:tc{1", "emu:tc{2", "64", "--demo", "5000"][..],
    ] {
        let Some(out) = run(
            "bridge_takes_ports_and_burst_with_flags_or_after_them",
            "bridge",
            args,
        ) else {
            return;
        };
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{args:?}: {stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains("5000 came through in order"),
            "{args:?}: {stdout}"
        );
        assert_eq!(
            stdout.contains("copying each packet (-c)"),
            args[0] == "-c",
            "{stdout}"
        );
    }
}

#[test]
fn bridge_help_and_bad_arguments() {
    let flags = [
        "-i PORT",
        "PORT_A",
        "-b BURST",
        "-w SECS",
        "-c ",
        "-L ",
        "-v ",
        "-T SECS",
        "--fallback",
        "--promisc",
        "--demo N",
        "-h, --help",
    ];
    if !help_and_bad_flag("bridge_help_and_bad_arguments", "bridge", &flags) {
        return;
    }
    refuses(
        "bridge",
        &[
            (&["-q"], "invalid option '-q'"),
            (&["a", "b", "0"], "BURST takes a number from 1 to 8192, not `0`"),
            (&["-b", "8193", "a"], "-b takes a number from 1 to 8192"),
            (&["a", "b", "1", "c"], "unexpected argument `c`"),
            (&["-w", "101", "a"], "-w takes a number of seconds from 0 to 100"),
            (&["-T", "0", "a"], "-T takes a number of seconds above 0"),
            (&["--demo", "0", "a"], "--demo takes a positive number of frames"),
            (&["-i", "a", "-i", "b", "-i", "c"], "two ports are named already"),
            (&["-i"], "missing argument for option '-i'"),
            (&[], "name a port"),
        ],
    );
}

/// `-v` counts as netmap's does: `-vv` (or `-v -v`) also prints each pass.
#[test]
fn bridge_takes_v_twice() {
    let test = "bridge_takes_v_twice";
    let Some(out) = run(test, "bridge", &["-vv", "emu:tv{1", "emu:tv{2", "--demo=500"]) else {
        return;
    };
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("packets, RX ring 0 -> TX ring 0"), "{stdout}");
    let once = run(test, "bridge", &["-v", "emu:tv{1", "emu:tv{2", "--demo=500"]).expect("built above");
    let stdout = text(&once.stdout);
    assert!(once.status.success(), "{stdout}{}", text(&once.stderr));
    assert!(!stdout.contains("RX ring 0 -> TX ring 0"), "{stdout}");
}

#[test]
fn ping_pong_runs_and_reports() {
    let Some(out) = run("ping_pong_runs_and_reports", "ping_pong", &["-n", "2000"]) else {
        return;
    };
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("round trips: 2000 "), "{stdout}");
    assert!(stdout.contains("p99.9"), "{stdout}");
}

#[test]
fn ping_pong_help_and_bad_arguments() {
    let flags = ["PORT_A PORT_B", "-n COUNT", "-s SIZE", "--fallback", "-h, --help"];
    if !help_and_bad_flag("ping_pong_help_and_bad_arguments", "ping_pong", &flags) {
        return;
    }
    refuses(
        "ping_pong",
        &[
            (&["-n", "0"], "-n takes a positive count, not `0`"),
            (&["-n", "many"], "-n takes a positive count, not `many`"),
            (&["-s", "59"], "-s takes a size from 60 to 65535 bytes"),
            (&["-s", "65536"], "-s takes a size from 60 to 65535 bytes"),
            (&["-s"], "missing argument for option '-s'"),
            (&["emu:pp{1"], "name two ports, or none"),
        ],
    );
}

#[test]
fn ping_pong_refuses_one_port_for_both_ends() {
    for args in [&["lo", "lo"][..], &["afpacket:lo", "lo", "--fallback"][..]] {
        let Some(out) = run("ping_pong_refuses_one_port_for_both_ends", "ping_pong", args) else {
            return;
        };
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("are one port"), "{args:?}: {stderr}");
        assert!(stderr.contains("loopback"), "{args:?}: {stderr}");
    }
}

#[test]
fn probe_names_the_embedded_backend_for_an_emu_port() {
    let Some(out) = run(
        "probe_names_the_embedded_backend_for_an_emu_port",
        "probe",
        &["emu:x{1"],
    ) else {
        return;
    };
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("embedded kernel: always available"), "{stdout}");
    assert!(
        stdout.contains("port emu:x{1: would open with embedded (emu)"),
        "{stdout}"
    );
}

#[test]
fn probe_help_and_bad_arguments() {
    let flags = ["PORT", "--fallback", "-h, --help"];
    if !help_and_bad_flag("probe_help_and_bad_arguments", "probe", &flags) {
        return;
    }
    refuses(
        "probe",
        &[
            (&["emu:x{1", "emu:y{1"], "unexpected argument \"emu:y{1\""),
            (&["--fallback=yes"], "unexpected argument for option '--fallback'"),
        ],
    );
}

#[test]
fn mio_echo_help_and_bad_arguments() {
    let flags = ["PORT...", "--threads", "-h, --help"];
    if !help_and_bad_flag("mio_echo_help_and_bad_arguments", "mio_echo", &flags) {
        return;
    }
    refuses(
        "mio_echo",
        &[
            (&["-t"], "invalid option '-t'"),
            (&["--threads=2"], "unexpected argument for option '--threads'"),
        ],
    );
}

#[test]
fn mio_server_help_and_bad_arguments() {
    let flags = [
        "--listen ADDR",
        "--ports PORT_A PORT_B",
        "--generate",
        "--rate PPS",
        "-h, --help",
    ];
    if !help_and_bad_flag("mio_server_help_and_bad_arguments", "mio_server", &flags) {
        return;
    }
    refuses(
        "mio_server",
        &[
            (&["--rate", "-1"], "--rate takes a number of packets per second"),
            (
                &["--listen", "nowhere"],
                "--listen takes an address such as 127.0.0.1:7000",
            ),
            (
                &["--ports", "emu:a{1", "--generate"],
                "--ports takes two port names",
            ),
            (&["--listen"], "missing argument for option '--listen'"),
        ],
    );
}

/// `vale_ctl` takes vale-ctl's flags, `-h` among them (attach with the host
/// stack), so only `--help` prints the usage.
#[test]
fn vale_ctl_help_and_bad_arguments() {
    let test = "vale_ctl_help_and_bad_arguments";
    let Some(help) = run(test, "vale_ctl", &["--help"]) else {
        return;
    };
    assert!(help.status.success(), "vale_ctl --help: {:?}", help.status);
    let usage = text(&help.stdout);
    assert!(usage.starts_with("usage: vale_ctl "), "{usage}");
    for flag in [
        "-a vale0:NIC",
        "-h vale0:NIC",
        "-d vale0:NIC",
        "-n NAME",
        "-r NAME",
        "-l vale0:PORT",
        "-g NAME",
        "-p vale0:NIC",
        "-P vale0:NIC",
        "-C CONFIG",
        "-m MEMID",
        "-v ",
        "--help",
        "with no arguments",
    ] {
        assert!(
            usage.contains(flag),
            "vale_ctl --help does not explain {flag}: {usage}"
        );
    }
    let bad = run(test, "vale_ctl", &["--no-such-flag"]).expect("built above");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = text(&bad.stderr);
    assert!(stderr.contains("invalid option '--no-such-flag'"), "{stderr}");
    assert!(stderr.contains(&usage), "no usage on stderr: {stderr}");
    refuses(
        "vale_ctl",
        &[
            (&["-h"], "missing argument for option '-h'"),
            (&["-v"], "no action given"),
            (
                &["-n", "p0", "-C", "1024,x"],
                "-C takes up to four comma-separated numbers",
            ),
            (&["-n", "p0", "-C", "1,2,3,4,5"], "-C takes up to four"),
            (&["-a", "vale0:p0", "-C", "0,0,70000"], "70000 rings are too many"),
            (&["-p", "vale0:eth0", "-C", "0,1,2"], "COUNT must be 1"),
            (&["-n", "p0", "-m", "x"], "-m takes a memory region id"),
            (&["-l", "vale0:p", "extra"], "unexpected argument \"extra\""),
        ],
    );
}

#[test]
fn vale_ctl_serves_embedded_switches_and_refuses_bad_port_names() {
    let test = "vale_ctl_serves_embedded_switches_and_refuses_bad_port_names";
    let port = format!("emu:valectl{}:p0", std::process::id());
    let Some(out) = run(test, "vale_ctl", &["-n", &port]) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The persistent port outlived vale_ctl: another run finds it.
    let out = run(test, "vale_ctl", &["-l", &port]).expect("built above");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("port_idx:"), "{}", text(&out.stdout));
    let out = run(test, "vale_ctl", &["-r", &port]).expect("built above");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(test, "vale_ctl", &["-l", &port]).expect("built above");
    assert_eq!(out.status.code(), Some(1));
    // Attaching has no meaning on an embedded switch, and says so.
    let out = run(test, "vale_ctl", &["-a", &port]).expect("built above");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("vale_ctl: failed to attach {port}: ")) && stderr.contains("no NICs"),
        "{stderr}"
    );
    let out = run(test, "vale_ctl", &["-a", "eth0"]).expect("built above");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("expected a VALE switch port, `valeX:NAME`"),
        "{stderr}"
    );
}
