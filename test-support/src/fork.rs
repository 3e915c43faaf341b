//! Running a check in a forked child of the test process.

/// Forks; in the child runs `check` and exits with 0 if it returned `true`,
/// 1 if not; in the parent waits for the child and fails the test unless it
/// exited with 0.
///
/// The child must call nothing that could wait on a lock another thread of
/// the test process held at the fork (the crate's calls on a port opened
/// before the fork answer `Error::Forked` before taking any).
pub fn in_child(check: impl FnOnce() -> bool) {
    // SAFETY: the child runs `check` (see above) and ends with `_exit`,
    // never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = check();
        // SAFETY: ends the child without unwinding into the test harness or
        // running the parent's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a live int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child failed its check (wait status {status})"
    );
}
