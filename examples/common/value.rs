//! An argument's value checked as the examples check theirs, with a message
//! that says what the argument takes.

use std::ffi::OsString;
use std::str::FromStr;

use lexopt::ValueExt;

/// `value` as a `T` for which `ok` holds, else the error "`what` takes
/// `takes`, not `value`".
pub fn checked<T: FromStr>(
    what: &str,
    value: OsString,
    takes: &str,
    ok: impl FnOnce(&T) -> bool,
) -> Result<T, lexopt::Error> {
    let text = value.string()?;
    text.parse()
        .ok()
        .filter(ok)
        .ok_or_else(|| format!("{what} takes {takes}, not `{text}`").into())
}
