//! The example programs, as the tests run them.

use std::path::PathBuf;

/// The example binary `name`, built by `cargo test` beside the test binaries
/// (`<target>/<profile>/examples/`, the tests being in `.../deps/`), or
/// `None` where it was not built (a run that names one test target), which
/// [skips](crate::skip) `test`.
pub fn binary(test: &str, name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    if path.is_file() {
        return Some(path);
    }
    crate::skip::skip(
        test,
        &format!("the {name} example is not built (a whole `cargo test` builds it)"),
    );
    None
}
