//! The command line of the examples, as each of them takes it: parsed with
//! `lexopt`; `-h`/`--help` prints the usage to stdout and exits 0, and a bad
//! argument prints what is wrong and the usage to stderr and exits 2.

use std::process::ExitCode;

/// Parses the command line of example `name` with `parse`, which returns
/// `None` when it met `-h` or `--help`. `Err` is the exit code to return
/// from `main`, the usage or the error printed.
pub fn parse<T>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(&mut lexopt::Parser) -> Result<Option<T>, lexopt::Error>,
) -> Result<T, ExitCode> {
    match parse(&mut lexopt::Parser::from_env()) {
        Ok(Some(args)) => Ok(args),
        Ok(None) => {
            println!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            eprintln!("{usage}");
            Err(ExitCode::from(2))
        }
    }
}
