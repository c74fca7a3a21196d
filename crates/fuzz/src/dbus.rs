//! Structure-aware inputs for `Build`'s options: a byte string read as a series of choices
//! becomes an `a{sv}` dictionary (the known keys with their own type or another, unknown
//! keys, values of every D-Bus type, nested `a{sv}`, arrays, structures, descriptors). Any
//! byte string is a valid choice list, so the byte mutations of [`crate::mutate`] apply and a
//! failing dictionary is replayed from its bytes.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::OnceLock;

use zbus::wire::{Fd, ObjectPath, OwnedVariant, Signature, Structure, StructureBuilder, Variant};

/// Reads choices from bytes; past the end every choice is 0 (so reading always ends).
struct Choices<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.byte()))
    }

    fn len(&mut self) -> usize {
        match self.byte() {
            255 => 65_536 + usize::from(self.byte()) * 256,
            b => usize::from(b % 24),
        }
    }

    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a",
            "0",
            "{",
            "}",
            "\"",
            ":",
            "sha256:",
            "org.osbuild.noop",
            "\u{e9}",
            "\0",
            "{\"org.osbuild.curl\": {\"urls\": {}}}",
            "NaN",
            "[",
            "\\",
            "\u{1F600}",
            "/",
        ];
        let n = self.len();
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(PIECES[usize::from(self.byte()) % PIECES.len()]);
            if self.pos > self.bytes.len() + 64 {
                // Out of choices: a long string of the same piece is enough.
                s.push_str(&"a".repeat(n.saturating_sub(s.len())));
                break;
            }
        }
        s
    }
}

/// A descriptor to put in `h` values: /dev/null, opened once.
fn dev_null() -> &'static File {
    static DEV_NULL: OnceLock<File> = OnceLock::new();
    DEV_NULL.get_or_init(|| File::open("/dev/null").expect("opening /dev/null"))
}

const SIGNATURES: &[&str] = &[
    "s", "as", "a{sv}", "(ii)", "v", "g", "aaaaas", "a{", "", "h",
];

/// A value of any D-Bus type; containers nest up to `depth` 0 (past the bus's limit of 32).
fn variant(c: &mut Choices, depth: u8) -> Variant<'static> {
    let kind = if depth == 0 { c.below(12) } else { c.below(17) };
    match kind {
        0 => Variant::U8(c.byte()),
        1 => Variant::Bool(c.byte() & 1 == 1),
        2 => Variant::I16(c.u64() as i16),
        3 => Variant::U16(c.u64() as u16),
        4 => Variant::I32(c.u64() as i32),
        5 => Variant::U32(c.u64() as u32),
        6 => Variant::I64(c.u64() as i64),
        7 => Variant::U64(c.u64()),
        8 => Variant::F64(f64::from_bits(c.u64())),
        9 => Variant::from(c.string()),
        10 => {
            let text = SIGNATURES[usize::from(c.byte()) % SIGNATURES.len()];
            text.parse::<Signature>()
                .map_or_else(|_| Variant::from(text.to_owned()), Variant::from)
        }
        11 => {
            let path = ["/", "/org/osbuild/Builder1/job/1", "/a/b_c"][usize::from(c.below(3))];
            Variant::from(
                ObjectPath::try_from(path)
                    .expect("a valid object path")
                    .into_owned(),
            )
        }
        12 => Variant::Variant(Box::new(variant(c, depth - 1))),
        13 => array(c, depth - 1),
        14 => Variant::from(dict(c, depth - 1)),
        15 => structure(c, depth - 1).map_or(Variant::U8(0), Variant::from),
        _ => Variant::from(Fd::from(dev_null().as_fd())),
    }
}

/// An array of one element type: strings, ids, bytes, integers, variants or arrays of strings.
fn array(c: &mut Choices, depth: u8) -> Variant<'static> {
    let n = c.len();
    match c.below(6) {
        0 => Variant::from((0..n).map(|_| c.string()).collect::<Vec<_>>()),
        1 => Variant::from(vec!["a".repeat(64); n]),
        2 => Variant::from((0..n).map(|_| c.byte()).collect::<Vec<u8>>()),
        3 => Variant::from((0..n).map(|_| c.u64() as u32).collect::<Vec<u32>>()),
        4 => Variant::from(
            (0..n.min(32))
                .map(|_| variant(c, depth))
                .collect::<Vec<_>>(),
        ),
        _ => Variant::from((0..n.min(8)).map(|_| vec![c.string()]).collect::<Vec<_>>()),
    }
}

fn dict(c: &mut Choices, depth: u8) -> HashMap<String, Variant<'static>> {
    (0..c.below(6))
        .map(|_| (c.string(), variant(c, depth)))
        .collect()
}

fn structure(c: &mut Choices, depth: u8) -> zbus::Result<Structure<'static>> {
    let mut s = StructureBuilder::new();
    for _ in 0..c.below(4) {
        s.push_value(variant(c, depth));
    }
    s.build()
}

/// A value of the type `Build` expects for `key`.
fn well_typed(c: &mut Choices, key: &str) -> Variant<'static> {
    match key {
        "checkpoints" => Variant::from((0..c.len()).map(|_| c.string()).collect::<Vec<_>>()),
        "source-epoch" => Variant::U64(c.u64()),
        _ => Variant::from(c.string()),
    }
}

/// The options dictionary the bytes choose.
pub fn build_options(bytes: &[u8]) -> HashMap<String, OwnedVariant> {
    let mut c = Choices { bytes, pos: 0 };
    let mut dict = HashMap::new();
    for _ in 0..c.below(6) {
        let key = match c.below(8) {
            0 | 1 => "checkpoints".to_owned(),
            2 => "sources".to_owned(),
            3 => "secrets".to_owned(),
            4 => "source-epoch".to_owned(),
            5 => "Sources".to_owned(),
            _ => c.string(),
        };
        let value = if c.byte() < 160 {
            well_typed(&mut c, &key)
        } else {
            variant(&mut c, 40)
        };
        let value = OwnedVariant::try_from(value).expect("an owned copy (a dup'ed descriptor)");
        dict.insert(key, value);
    }
    dict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_is_a_dictionary_and_the_same_one_twice() {
        let mut rng = crate::rng::Rng::new(1);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..rng.size(600)).map(|_| rng.next_u64() as u8).collect();
            let a = build_options(&bytes);
            assert_eq!(
                format!("{:?}", build_options(&bytes).len()),
                format!("{:?}", a.len())
            );
            for v in a.values() {
                kinds.insert(
                    v.value_signature()
                        .to_string()
                        .chars()
                        .next()
                        .unwrap_or(' '),
                );
            }
        }
        // Strings, arrays, dicts (a{...} starts with 'a'), variants, structures, fds, numbers.
        for k in ['s', 'a', 'v', '(', 'h', 't', 'y', 'd', 'g', 'o'] {
            assert!(kinds.contains(&k), "no value of type {k}: {kinds:?}");
        }
    }
}
