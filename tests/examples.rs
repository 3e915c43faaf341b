//! The command-line examples as a user runs them: `bridge` with netmap's
//! `bridge` arguments, and `ping_pong`'s run and its refusals.
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
    let Some(help) = run("bridge_help_and_bad_arguments", "bridge", &["--help"]) else {
        return;
    };
    assert!(help.status.success());
    let usage = text(&help.stdout);
    for flag in ["-i PORT", "-b BURST", "-w SECS", "-c ", "-L ", "-v ", "--demo N"] {
        assert!(usage.contains(flag), "--help does not explain {flag}: {usage}");
    }
    for (args, why) in [
        (&["-q"][..], "unknown option `-q`"),
        (&["a", "b", "0"][..], "a burst is a number from 1 to 8192"),
        (&["a", "b", "1", "c"][..], "unexpected argument `c`"),
        (
            &["-w", "101", "a"][..],
            "-w takes a number of seconds from 0 to 100",
        ),
        (&[][..], "name a port"),
    ] {
        let out = run("bridge_help_and_bad_arguments", "bridge", args).expect("built above");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
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
