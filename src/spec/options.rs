//! The options after `@`: `conf`, `extmem` and `offset`, each with a table
//! of its keys, looked up by name, and what each key's value sets.

use super::parse::Parser;
use super::{Conf, ExtmemOpt, OffsetOpt, PortSpec, Result};

const OPTIONS_EXPECTED: &str = "one of the options conf, extmem, offset";

/// Where a numeric key's value goes: the width of the field is the largest
/// value the key takes.
enum Set<T> {
    U16(fn(&mut T, u16)),
    U32(fn(&mut T, u32)),
    U64(fn(&mut T, u64)),
}

impl<T> Set<T> {
    /// The largest value the key takes.
    fn max(&self) -> u64 {
        match self {
            Set::U16(_) => u16::MAX.into(),
            Set::U32(_) => u32::MAX.into(),
            Set::U64(_) => u64::MAX,
        }
    }

    /// Writes `v` (at most [`max`](Self::max)) into `target`.
    fn apply(&self, target: &mut T, v: u64) {
        match self {
            Set::U16(f) => {
                if let Ok(v) = u16::try_from(v) {
                    f(target, v);
                }
            }
            Set::U32(f) => {
                if let Ok(v) = u32::try_from(v) {
                    f(target, v);
                }
            }
            Set::U64(f) => f(target, v),
        }
    }
}

/// A numeric key of an option: its name (with `_`, as `-` reads) and where
/// its value goes.
type Key<T> = (&'static str, Set<T>);

/// The keys of `conf`. The shorthands come first: values are applied in
/// this order, so the specific keys win whatever their order in the name.
const CONF: &[Key<Conf>] = &[
    (
        "rings",
        Set::U16(|c, n| (c.tx_rings, c.rx_rings) = (Some(n), Some(n))),
    ),
    (
        "host_rings",
        Set::U16(|c, n| (c.host_tx_rings, c.host_rx_rings) = (Some(n), Some(n))),
    ),
    (
        "slots",
        Set::U32(|c, n| (c.tx_slots, c.rx_slots) = (Some(n), Some(n))),
    ),
    ("tx_rings", Set::U16(|c, n| c.tx_rings = Some(n))),
    ("rx_rings", Set::U16(|c, n| c.rx_rings = Some(n))),
    ("host_tx_rings", Set::U16(|c, n| c.host_tx_rings = Some(n))),
    ("host_rx_rings", Set::U16(|c, n| c.host_rx_rings = Some(n))),
    ("tx_slots", Set::U32(|c, n| c.tx_slots = Some(n))),
    ("rx_slots", Set::U32(|c, n| c.rx_slots = Some(n))),
];

/// The default key of `extmem`, whose value is text.
const EXTMEM_FILE: &str = "file";

/// The numeric keys of `extmem`: fields of `nmreq_pools_info`, 32 bits wide.
const EXTMEM: &[Key<ExtmemOpt>] = &[
    ("if_num", Set::U32(|x, n| x.if_num = Some(n.into()))),
    ("if_size", Set::U32(|x, n| x.if_size = Some(n.into()))),
    ("ring_num", Set::U32(|x, n| x.ring_num = Some(n.into()))),
    ("ring_size", Set::U32(|x, n| x.ring_size = Some(n.into()))),
    ("buf_num", Set::U32(|x, n| x.buf_num = Some(n.into()))),
    ("buf_size", Set::U32(|x, n| x.buf_size = Some(n.into()))),
];

/// The keys of `offset`; `initial` is the default key.
const OFFSET: &[Key<OffsetOpt>] = &[
    ("initial", Set::U64(|o, n| (o.initial, o.maxoff) = (n, n))),
    ("bits", Set::U64(|o, n| o.bits = n)),
];

/// The options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OptKind {
    Conf,
    Extmem,
    Offset,
}

impl OptKind {
    pub(super) const ALL: [OptKind; 3] = [OptKind::Conf, OptKind::Extmem, OptKind::Offset];

    fn from_name(name: &str) -> Option<OptKind> {
        OptKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            OptKind::Conf => "conf",
            OptKind::Extmem => "extmem",
            OptKind::Offset => "offset",
        }
    }

    /// The key `NAME=value` sets, which must be given; `conf` has none.
    pub(super) fn default_key(self) -> Option<&'static str> {
        match self {
            OptKind::Conf => None,
            OptKind::Extmem => Some(EXTMEM_FILE),
            OptKind::Offset => Some(OFFSET[0].0),
        }
    }

    /// Every key, in the order the error for an unknown key lists them.
    pub(super) fn keys(self) -> Vec<&'static str> {
        fn names<T>(keys: &[Key<T>]) -> impl Iterator<Item = &'static str> + '_ {
            keys.iter().map(|k| k.0)
        }
        match self {
            OptKind::Conf => names(CONF).collect(),
            OptKind::Extmem => std::iter::once(EXTMEM_FILE).chain(names(EXTMEM)).collect(),
            OptKind::Offset => names(OFFSET).collect(),
        }
    }

    /// The key written as `text` (`-` reads as `_`), if the option has it.
    pub(super) fn key(self, text: &str) -> Option<&'static str> {
        fn find<T>(keys: &[Key<T>], text: &str) -> Option<&'static str> {
            keys.iter().map(|k| k.0).find(|k| spelled(k, text))
        }
        match self {
            OptKind::Conf => find(CONF, text),
            OptKind::Extmem if spelled(EXTMEM_FILE, text) => Some(EXTMEM_FILE),
            OptKind::Extmem => find(EXTMEM, text),
            OptKind::Offset => find(OFFSET, text),
        }
    }
}

/// Whether `text` spells `key`, reading `-` as `_`.
fn spelled(key: &str, text: &str) -> bool {
    key.len() == text.len()
        && key
            .bytes()
            .zip(text.bytes())
            .all(|(k, t)| k == t || (k == b'_' && t == b'-'))
}

/// The keys given to one option: each key's name and where its value lies,
/// `(start, end)` byte offsets in the text.
#[derive(Default)]
struct Values(Vec<(&'static str, (usize, usize))>);

impl Values {
    fn get(&self, key: &str) -> Option<(usize, usize)> {
        self.0.iter().find(|(k, _)| *k == key).map(|&(_, at)| at)
    }
}

impl Parser<'_> {
    /// `option`: reads the option in `start..end` (after its `@`) into `spec`.
    pub(super) fn option(&self, start: usize, end: usize, spec: &mut PortSpec) -> Result<()> {
        if start == end {
            return Err(self.err(start, format!("{OPTIONS_EXPECTED} after `@`")));
        }
        let name_end = self.find(start, end, b":=");
        let kind = self.option_name(start, name_end)?;
        let name = kind.name();
        let repeated = match kind {
            OptKind::Conf => false,
            OptKind::Extmem => spec.extmem.is_some(),
            OptKind::Offset => spec.offset.is_some(),
        };
        if repeated {
            return Err(self.err(
                start,
                format!("{OPTIONS_EXPECTED}, each of extmem and offset once (`{name}` was already given)"),
            ));
        }
        let vals = self.option_values(kind, name_end, end)?;
        match kind {
            OptKind::Conf => self.apply(CONF, &vals, &mut spec.conf)?,
            OptKind::Extmem => spec.extmem = Some(self.extmem(&vals)?),
            OptKind::Offset => spec.offset = Some(self.offset(&vals)?),
        }
        Ok(())
    }

    /// The option named by `start..name_end`.
    fn option_name(&self, start: usize, name_end: usize) -> Result<OptKind> {
        let name = &self.text[start..name_end];
        if name == "share" {
            return Err(self.err(
                start,
                format!(
                    "{OPTIONS_EXPECTED} (`share` asks the kernel for another port's memory \
                     id; give that id as `@N` instead)"
                ),
            ));
        }
        OptKind::from_name(name).ok_or_else(|| self.err(start, OPTIONS_EXPECTED))
    }

    /// What follows option `kind`'s name, at `name_end` up to `end`: `=value`
    /// for the default key, or `:` and keys.
    fn option_values(&self, kind: OptKind, name_end: usize, end: usize) -> Result<Values> {
        let name = kind.name();
        let default_key = kind.default_key();
        let mut vals = Values::default();
        match (self.peek(name_end).filter(|_| name_end < end), default_key) {
            (None, Some(_)) => return Err(self.err(name_end, format!("`=` or `:` after option `{name}`"))),
            (None, None) => return Err(self.err(name_end, format!("`:` after option `{name}`"))),
            (Some(b'='), None) => {
                return Err(self.err(
                    name_end,
                    format!("`:` after option `{name}` (it has no default key for `=`)"),
                ))
            }
            (Some(b'='), Some(_)) if name_end + 1 == end => {
                return Err(self.err(end, format!("a value after `{name}=`")));
            }
            (Some(b'='), Some(key)) => vals.0.push((key, (name_end + 1, end))),
            (Some(_), _) => self.keys(kind, name_end + 1, end, &mut vals)?,
        }
        match default_key {
            Some(key) if vals.get(key).is_none() => {
                Err(self.err(end, format!("the key `{key}`, which option `{name}` requires")))
            }
            _ => Ok(vals),
        }
    }

    /// Reads `key=value,...` in `start..end` for option `kind` into `vals`.
    fn keys(&self, kind: OptKind, start: usize, end: usize, vals: &mut Values) -> Result<()> {
        if start == end {
            return Ok(());
        }
        let name = kind.name();
        let mut item = start;
        loop {
            let item_end = self.find(item, end, b",");
            let key_end = self.find(item, item_end, b"=");
            let Some(key) = kind.key(&self.text[item..key_end]) else {
                let keys = kind.keys().join(", ");
                return Err(self.err(item, format!("one of the keys {keys} of option `{name}`")));
            };
            if vals.get(key).is_some() {
                return Err(self.err(
                    item,
                    format!("each key once in option `{name}` (`{key}` was already given)"),
                ));
            }
            if key_end == item_end {
                return Err(self.err(key_end, format!("`=` after option key `{key}`")));
            }
            if key_end + 1 == item_end {
                return Err(self.err(item_end, format!("a value after `{key}=`")));
            }
            vals.0.push((key, (key_end + 1, item_end)));
            if item_end == end {
                return Ok(());
            }
            item = item_end + 1;
        }
    }

    /// Reads the value of every key of `keys` given in `vals`, in the order
    /// of `keys`, into `target`.
    fn apply<T>(&self, keys: &[Key<T>], vals: &Values, target: &mut T) -> Result<()> {
        for (key, set) in keys {
            if let Some((start, end)) = vals.get(key) {
                set.apply(target, self.value(start, end, key, set.max())?);
            }
        }
        Ok(())
    }

    /// The `extmem` option of `vals`, which holds its file.
    fn extmem(&self, vals: &Values) -> Result<ExtmemOpt> {
        let file = vals.get(EXTMEM_FILE).map_or("", |(s, e)| &self.text[s..e]);
        let mut x = ExtmemOpt::new(file);
        self.apply(EXTMEM, vals, &mut x)?;
        Ok(x)
    }

    /// The `offset` option of `vals`, which holds `initial`.
    fn offset(&self, vals: &Values) -> Result<OffsetOpt> {
        let mut o = OffsetOpt::new(0, 0, 0, 0);
        self.apply(OFFSET, vals, &mut o)?;
        Ok(o)
    }

    /// Reads an option value in `start..end` as a number of at most `max`.
    fn value(&self, start: usize, end: usize, key: &str, max: u64) -> Result<u64> {
        if let Some(bad) = (start..end).find(|&i| !self.b[i].is_ascii_digit()) {
            return Err(self.err(bad, format!("a decimal number as the value of `{key}`")));
        }
        match self.number(start).value {
            Some(v) if v <= max => Ok(v),
            _ => Err(self.err(start, format!("a value of `{key}` of at most {max}"))),
        }
    }
}
