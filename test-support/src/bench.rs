//! The benchmarks' command line: `--packets N` and `--runs N`, anything
//! else (cargo passes `--bench`) ignored.

/// How much a benchmark does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opts {
    /// Packets per timed run.
    pub packets: usize,
    /// Timed runs (at least one).
    pub runs: usize,
}

impl Opts {
    /// The options in `args` (the program name left out), over `defaults`;
    /// a value that does not parse keeps its default.
    ///
    /// ```
    /// use netmap_test_support::bench::Opts;
    ///
    /// let d = Opts { packets: 100, runs: 3 };
    /// let args = ["--bench", "--runs", "0", "--packets", "x"].map(String::from);
    /// assert_eq!(Opts::parse(args, d), Opts { packets: 100, runs: 1 });
    /// ```
    pub fn parse(args: impl IntoIterator<Item = String>, defaults: Opts) -> Opts {
        let mut o = defaults;
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().and_then(|v| v.parse().ok());
            match a.as_str() {
                "--packets" => o.packets = val().unwrap_or(o.packets),
                "--runs" => o.runs = val().unwrap_or(o.runs),
                _ => {}
            }
        }
        o.runs = o.runs.max(1);
        o
    }

    /// The options of this process's command line.
    pub fn from_args(defaults: Opts) -> Opts {
        Opts::parse(std::env::args().skip(1), defaults)
    }
}
