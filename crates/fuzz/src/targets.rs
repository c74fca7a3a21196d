//! The fuzz targets: each parser that reads what a client, a manifest or a sandbox sends, fed
//! one input (bytes) at a time, with the properties that must hold when it accepts the input.
//! A target panics (caught by [`crate::worker`]) when a parser panics or a property fails.

use std::collections::HashMap;
use std::path::Path;

use osbuild::manifest;
use osbuild::modules::Index;
use osbuild::service::wire::BuildOptions;
use osbuild_protocol::json::{self, Value};
use osbuild_protocol::{args, remoteloop, result, source, sources_api, stdio};
use zbus::wire::serialized::{Context, Data};
use zbus::wire::{OwnedVariant, BE, LE};

use crate::corpus;
use crate::dbus;
use crate::libdir::Libdir;
use crate::mutate::{self, json_value};
use crate::rng::Rng;

/// What the targets share: the index over the libdir the manifest loader checks against.
pub struct Harness {
    index: Index,
    _libdir: Option<Libdir>,
}

impl Harness {
    /// A harness with a libdir of its own (removed when dropped).
    pub fn new() -> std::io::Result<Harness> {
        let libdir = Libdir::new()?;
        Ok(Harness {
            index: libdir.index().clone(),
            _libdir: Some(libdir),
        })
    }

    /// A harness over a [`Libdir`] someone else owns (a worker process that may die).
    pub fn at(libdir: &Path) -> Harness {
        Harness {
            index: Index::new(libdir),
            _libdir: None,
        }
    }
}

/// How a target makes a fresh input (as opposed to mutating a seed).
#[derive(Clone, Copy)]
enum Fresh {
    /// A random JSON document.
    Json,
    /// Random bytes (choices for the D-Bus dictionary).
    Bytes,
    /// A random dictionary, serialized (the body of a `Build` call).
    DictBody,
}

pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    seeds: fn() -> Vec<Vec<u8>>,
    fresh: Fresh,
    /// True when the parser accepted the input.
    run: fn(&Harness, &[u8]) -> bool,
}

impl Target {
    /// Runs one input; panics when a parser panics or a property does not hold. True when
    /// a parser accepted the input (how deep the inputs reach).
    pub fn run(&self, harness: &Harness, input: &[u8]) -> bool {
        (self.run)(harness, input)
    }

    pub fn by_name(name: &str) -> Option<&'static Target> {
        TARGETS.iter().find(|t| t.name == name)
    }
}

/// Makes the inputs of one target: input `i` of seed `s` depends on nothing else.
pub struct Generator {
    target: &'static Target,
    seeds: Vec<Vec<u8>>,
}

impl Generator {
    pub fn new(target: &'static Target) -> Generator {
        Generator {
            target,
            seeds: (target.seeds)(),
        }
    }

    pub fn input(&self, seed: u64, iteration: u64) -> Vec<u8> {
        let mut rng = Rng::for_input(seed, self.target.name, iteration);
        let mut input = if rng.one_in(8) {
            fresh(self.target.fresh, &mut rng)
        } else {
            self.seeds[rng.below(self.seeds.len())].clone()
        };
        let tree = matches!(self.target.fresh, Fresh::Json) && rng.one_in(2);
        if let Some(changed) = tree
            .then(|| mutate::mutate_tree(&mut rng, &input))
            .flatten()
        {
            input = changed;
        }
        // Byte mutations after most tree mutations too, but not all: some stay JSON.
        if !rng.one_in(if tree { 2 } else { 16 }) {
            let others: Vec<&[u8]> = self.seeds.iter().map(Vec::as_slice).collect();
            mutate::mutate(&mut rng, &mut input, &others);
        }
        input
    }
}

fn fresh(kind: Fresh, rng: &mut Rng) -> Vec<u8> {
    match kind {
        Fresh::Json => {
            let mut text = String::new();
            json_value(rng, &mut text, 0);
            text.into_bytes()
        }
        Fresh::Bytes => (0..rng.size(2048)).map(|_| rng.next_u64() as u8).collect(),
        Fresh::DictBody => {
            let choices: Vec<u8> = (0..rng.size(2048)).map(|_| rng.next_u64() as u8).collect();
            dict_body(&choices, rng.one_in(2))
        }
    }
}

/// The body of a `Build` call's options: a flag byte (even: little-endian) and the `a{sv}`.
fn dict_body(choices: &[u8], big_endian: bool) -> Vec<u8> {
    let dict = dbus::build_options(choices);
    let ctxt = Context::new(if big_endian { BE } else { LE }, 0);
    let body = zbus::wire::to_bytes(ctxt, &dict).map_or_else(|_| Vec::new(), |d| d.to_vec());
    let mut out = vec![u8::from(big_endian)];
    out.extend(body);
    out
}

fn texts(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

fn manifests() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = corpus::MANIFESTS
        .iter()
        .map(|(_, t)| t.as_bytes().to_vec())
        .collect();
    seeds.push(corpus::BUILD_ENV.as_bytes().to_vec());
    seeds
}

/// Choice strings for the dictionary generator: fixed random bytes.
fn choices() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(0x005b_011d);
    (0..32)
        .map(|i| (0..16 << (i % 6)).map(|_| rng.next_u64() as u8).collect())
        .collect()
}

fn dict_bodies() -> Vec<Vec<u8>> {
    choices()
        .iter()
        .enumerate()
        .map(|(i, c)| dict_body(c, i % 4 == 0))
        .collect()
}

/// Every target, in the order `all` runs them.
pub static TARGETS: &[Target] = &[
    Target {
        name: "json",
        about:
            "osbuild_protocol::json::parse; dumps of what parses parses back equal, dumps is stable",
        seeds: || {
            corpus::json_texts()
                .into_iter()
                .map(String::into_bytes)
                .collect()
        },
        fresh: Fresh::Json,
        run: |_, input| json_round_trip(&String::from_utf8_lossy(input)),
    },
    Target {
        name: "manifest-parse",
        about: "osbuild::manifest::parse_document (v1 and v2) and parse_build_env",
        seeds: manifests,
        fresh: Fresh::Json,
        run: |_, input| {
            let text = String::from_utf8_lossy(input);
            let build_env = manifest::parse_build_env(&text).is_ok();
            manifest::parse_document(&text).is_ok() || build_env
        },
    },
    Target {
        name: "manifest-load",
        about: "osbuild::manifest::load_document against a libdir of this repository's meta files",
        seeds: manifests,
        fresh: Fresh::Json,
        run: |h, input| manifest::load_document(&String::from_utf8_lossy(input), &h.index).is_ok(),
    },
    Target {
        name: "build-options",
        about:
            "BuildOptions::from_dict on generated a{sv} dictionaries; what it accepts round-trips",
        seeds: choices,
        fresh: Fresh::Bytes,
        run: |_, input| build_options(dbus::build_options(input)),
    },
    Target {
        name: "build-options-wire",
        about: "a Build call's a{sv} body as bytes: zbus's decoding, then BuildOptions::from_dict",
        seeds: dict_bodies,
        fresh: Fresh::DictBody,
        run: |_, input| build_options_wire(input),
    },
    Target {
        name: "sources-api",
        about: "osbuild_protocol::sources_api::{Request,Reply}::parse; requests round-trip",
        seeds: || texts(corpus::SOURCES_API),
        fresh: Fresh::Json,
        run: |_, input| {
            let request = round_trip(input, sources_api::Request::parse, |r| r.to_wire());
            let reply = sources_api::Reply::parse(input);
            request.is_some() || matches!(reply, Ok(sources_api::Reply::Error(_)))
        },
    },
    Target {
        name: "stdio",
        about: "osbuild_protocol::stdio::{Request,Reply}::parse (setup-stdio); both round-trip",
        seeds: || texts(corpus::STDIO),
        fresh: Fresh::Json,
        run: |_, input| {
            let request = round_trip(input, stdio::Request::parse, |r| r.to_wire());
            let reply = stdio::Reply::parse(input);
            if let Ok(r) = reply {
                assert_eq!(stdio::Reply::parse(r.to_wire().as_bytes()), Ok(r));
            }
            request.is_some() || reply.is_ok()
        },
    },
    Target {
        name: "source",
        about: "osbuild_protocol::source::Request::parse and the engine's reading of a reply",
        seeds: || texts(corpus::SOURCE),
        fresh: Fresh::Json,
        run: |_, input| {
            let request = source::Request::parse(input).is_ok();
            let failed = json::parse(&String::from_utf8_lossy(input))
                .is_ok_and(|v| matches!(source::Reply::from_value(v), source::Reply::Failed(_)));
            request || failed
        },
    },
    Target {
        name: "args",
        about: "osbuild_protocol::args::{StageArgs,AssemblerArgs}::parse",
        seeds: || texts(corpus::ARGS),
        fresh: Fresh::Json,
        run: |_, input| {
            let text = String::from_utf8_lossy(input);
            let stage = args::StageArgs::parse(&text).is_ok();
            args::AssemblerArgs::parse(&text).is_ok() || stage
        },
    },
    Target {
        name: "result",
        about:
            "osbuild_protocol::result::PipelineResult::parse; what parses is written back the same",
        seeds: || {
            corpus::results()
                .into_iter()
                .map(String::into_bytes)
                .collect()
        },
        fresh: Fresh::Json,
        run: |_, input| {
            let Ok(r) = result::PipelineResult::parse(&String::from_utf8_lossy(input)) else {
                return false;
            };
            let text = r.to_json();
            let again = result::PipelineResult::parse(&text).expect("to_json parses back");
            assert_eq!(again.to_json(), text, "to_json is not stable");
            true
        },
    },
    Target {
        name: "remoteloop",
        about: "osbuild_protocol::remoteloop::{Request,Reply}::parse with 0-255 descriptors passed",
        seeds: || {
            corpus::REMOTELOOP
                .iter()
                .map(|t| [&[2u8][..], t.as_bytes()].concat())
                .collect()
        },
        fresh: Fresh::Json,
        run: |_, input| remoteloop(input),
    },
];

/// Parses `input`; what parses must parse back to itself from its wire text.
fn round_trip<T: PartialEq + std::fmt::Debug>(
    input: &[u8],
    parse: fn(&[u8]) -> Option<T>,
    wire: fn(&T) -> String,
) -> Option<T> {
    let parsed = parse(input)?;
    assert_eq!(
        parse(wire(&parsed).as_bytes()).as_ref(),
        Some(&parsed),
        "round trip"
    );
    Some(parsed)
}

fn json_round_trip(text: &str) -> bool {
    let Ok(v) = json::parse(text) else {
        return false;
    };
    let once = json::dumps(&v);
    let back = json::parse(&once).unwrap_or_else(|e| panic!("dumps wrote what parse refuses: {e}"));
    assert!(same(&v, &back), "dumps changed the value");
    assert_eq!(
        json::dumps(&back),
        once,
        "dumps is not stable on the second round"
    );
    let pretty = json::parse(&json::dumps_pretty(&v)).expect("dumps_pretty parses back");
    assert!(same(&v, &pretty), "dumps_pretty changed the value");
    let in_order = json::dumps_in_order(&v);
    let again = json::parse(&in_order).expect("dumps_in_order parses back");
    assert!(same(&v, &again), "dumps_in_order changed the value");
    assert_eq!(
        json::dumps_in_order(&again),
        in_order,
        "dumps_in_order lost the order"
    );
    true
}

/// Equality with floats compared bit for bit (NaN equals NaN, -0.0 is not 0.0), as a round
/// trip through Python's float repr keeps them.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        // As maps: dumps sorts the keys, the document's order is dumps_in_order's to keep.
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn build_options(dict: HashMap<String, OwnedVariant>) -> bool {
    let Ok(options) = BuildOptions::from_dict(dict) else {
        return false;
    };
    let data = zbus::wire::to_bytes(Context::new(LE, 0), &options).expect("options serialize");
    let (dict, _): (HashMap<String, OwnedVariant>, _) = data.deserialize().expect("as a{sv}");
    assert_eq!(
        BuildOptions::from_dict(dict).as_ref(),
        Ok(&options),
        "options round-trip"
    );
    true
}

fn build_options_wire(input: &[u8]) -> bool {
    let Some((&flag, body)) = input.split_first() else {
        return false;
    };
    let endian = if flag % 2 == 0 { LE } else { BE };
    let data = Data::new(body, Context::new(endian, 0));
    data.deserialize::<HashMap<String, OwnedVariant>>()
        .is_ok_and(|(dict, _)| BuildOptions::from_dict(dict).is_ok())
}

fn remoteloop(input: &[u8]) -> bool {
    let (fds, body) = input
        .split_first()
        .map_or((0, input), |(&n, rest)| (usize::from(n), rest));
    let request = remoteloop::Request::parse(body, fds);
    if let Ok(r) = request {
        assert!(r.fd < fds && r.dir_fd < fds, "{r:?} with {fds} descriptors");
        let back = remoteloop::Request::parse(r.to_wire().as_bytes(), fds);
        assert_eq!(back, Ok(r));
    }
    let reply = remoteloop::Reply::parse(body);
    if let Ok(remoteloop::Reply::Devname(name)) = &reply {
        let digits = name.strip_prefix("loop").expect("loopN");
        assert!(
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
            "{name:?}"
        );
    }
    request.is_ok() || reply.is_ok()
}

/// A target for the harness's own tests (a run that panics, hangs, ...), seeded like `json`.
#[cfg(test)]
pub(crate) fn test_target(run: fn(&Harness, &[u8]) -> bool) -> &'static Target {
    Box::leak(Box::new(Target {
        name: "test",
        about: "",
        seeds: || vec![b"{}".to_vec()],
        fresh: Fresh::Json,
        run,
    }))
}
