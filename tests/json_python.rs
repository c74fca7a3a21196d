//! Differential test: our `json::dumps(json::parse(text))` against Python's
//! `json.dumps(json.loads(text), sort_keys=True)` on thousands of generated documents (floats
//! of every magnitude including subnormals, huge integers, unicode beyond the BMP, control
//! characters, nesting, duplicate keys), byte for byte; and `dumps_pretty` against
//! `indent=2`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use osbuild::json;

const PYTHON: &str = "/usr/bin/python3";
const COUNT: usize = 4000;

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn ws(rng: &mut Rng, out: &mut String) {
    if rng.below(4) == 0 {
        out.push_str(rng.pick(&[" ", "  ", "\t", " \t "]));
    }
}

fn digits(rng: &mut Rng, out: &mut String, n: u64) {
    for _ in 0..n {
        out.push(char::from(b'0' + rng.below(10) as u8));
    }
}

fn gen_float(rng: &mut Rng, out: &mut String) {
    match rng.below(8) {
        // Random bit patterns: every magnitude, subnormals included.
        0 => {
            let f = f64::from_bits(rng.next());
            let f = if f.is_finite() { f } else { 1.5 };
            write!(out, "{f:e}").unwrap();
        }
        // Subnormals and the edges of the range.
        1 => {
            let f = f64::from_bits(rng.below(1 << 52) | (rng.below(2) << 63));
            write!(out, "{f:e}").unwrap();
        }
        // Values with a fixed number of significant digits around the notation switch points.
        2 => {
            let exp = rng.below(30) as i32 - 10;
            let mant = 1 + rng.below(999);
            write!(out, "{mant}e{exp}").unwrap();
        }
        // Long decimal strings: tests correct rounding while parsing.
        3 => {
            if rng.below(2) == 0 {
                out.push('-');
            }
            out.push(char::from(b'1' + rng.below(9) as u8));
            out.push('.');
            let n = 1 + rng.below(25);
            digits(rng, out, n);
            let e = rng.below(700) as i64 - 350;
            write!(out, "{}{e}", rng.pick(&["e", "E"])).unwrap();
        }
        4 => out.push_str(rng.pick(&[
            "0.0",
            "-0.0",
            "1e16",
            "1e15",
            "9999999999999998.0",
            "1e-5",
            "0.0001",
            "0.00001",
            "0.1",
            "1E2",
            "2.0",
            "1e100",
            "1e400",
            "-1e400",
            "NaN",
            "Infinity",
            "-Infinity",
            "5e-324",
            "2.2250738585072014e-308",
            "1.7976931348623157e308",
            "1e+2",
            "1.0e-0",
            "123456789012345678901234567890.5",
            "0.30000000000000004",
        ])),
        // Plain fixed notation with a fraction.
        5 => {
            let n = 1 + rng.below(18);
            digits(rng, out, 1);
            out.push('.');
            digits(rng, out, n);
        }
        // Rust's own shortest form of a random ratio.
        _ => {
            let f = (rng.next() as f64) / ((1 + rng.below(1 << 40)) as f64);
            write!(out, "{f}").unwrap();
        }
    }
}

fn gen_int(rng: &mut Rng, out: &mut String) {
    match rng.below(4) {
        0 => out.push_str(rng.pick(&[
            "0",
            "-0",
            "18446744073709551616",
            "-9223372036854775809",
            "9223372036854775807",
        ])),
        1 => write!(out, "{}", rng.next() as i64).unwrap(),
        _ => {
            if rng.below(2) == 0 {
                out.push('-');
            }
            out.push(char::from(b'1' + rng.below(9) as u8));
            let n = rng.below(60);
            digits(rng, out, n);
        }
    }
}

fn gen_char(rng: &mut Rng, out: &mut String) {
    match rng.below(12) {
        0 => {
            // A control character, escaped one way or another.
            let c = rng.below(0x20) as u32;
            match c {
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                0x0a => out.push_str("\\n"),
                _ => write!(out, "\\u{c:04x}").unwrap(),
            }
        }
        1 => out.push_str(rng.pick(&[
            "\\\"", "\\\\", "\\/", "/", "\\t", "\\r", "\u{7f}", "\\u007F", "\\u00e9",
        ])),
        2 => {
            // BMP, outside the surrogate block, raw or escaped.
            let mut c = 0x80 + rng.below(0xff80) as u32;
            if (0xd800..0xe000).contains(&c) {
                c = 0x2603;
            }
            if rng.below(2) == 0 {
                out.push(char::from_u32(c).unwrap());
            } else {
                write!(out, "\\u{c:04X}").unwrap();
            }
        }
        3 => {
            // Beyond the BMP, raw or as a surrogate pair.
            let c = 0x10000 + rng.below(0x100000) as u32;
            if rng.below(2) == 0 {
                out.push(char::from_u32(c).unwrap());
            } else {
                let mut units = [0u16; 2];
                for u in char::from_u32(c).unwrap().encode_utf16(&mut units) {
                    write!(out, "\\u{u:04x}").unwrap();
                }
            }
        }
        _ => out.push(char::from(b' ' + rng.below(95) as u8)),
    }
}

fn gen_string(rng: &mut Rng, out: &mut String) {
    out.push('"');
    let n = rng.below(12);
    for _ in 0..n {
        let before = out.len();
        gen_char(rng, out);
        // A raw '"' or '\' from the printable range would end or break the string.
        if matches!(&out[before..], "\"" | "\\") {
            out.truncate(before);
            out.push('q');
        }
    }
    out.push('"');
}

fn gen_value(rng: &mut Rng, out: &mut String, depth: u32) {
    let kinds = if depth >= 6 { 6 } else { 9 };
    match rng.below(kinds) {
        0 => out.push_str(rng.pick(&["null", "true", "false"])),
        1 | 2 => gen_float(rng, out),
        3 => gen_int(rng, out),
        4 | 5 => gen_string(rng, out),
        6 => {
            out.push('[');
            let n = rng.below(5);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                gen_value(rng, out, depth + 1);
                ws(rng, out);
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            let n = rng.below(6);
            let mut keys: Vec<String> = Vec::new();
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                // Sometimes repeat an earlier key: the last value must win.
                if !keys.is_empty() && rng.below(4) == 0 {
                    let k = keys[rng.below(keys.len() as u64) as usize].clone();
                    out.push_str(&k);
                } else {
                    let mut k = String::new();
                    gen_string(rng, &mut k);
                    out.push_str(&k);
                    keys.push(k);
                }
                ws(rng, out);
                out.push(':');
                ws(rng, out);
                gen_value(rng, out, depth + 1);
            }
            out.push('}');
        }
    }
}

fn python_available() -> bool {
    if Path::new(PYTHON).exists() {
        true
    } else {
        eprintln!("SKIPPED: {PYTHON} is not installed, cannot compare with Python's json");
        false
    }
}

/// Runs `script` over `lines` (one JSON text per line on stdin), returns its stdout lines.
fn run_python(script: &str, lines: &[String]) -> Vec<String> {
    let mut input = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        input.write_all(l.as_bytes()).unwrap();
        input.write_all(b"\n").unwrap();
    }
    input.flush().unwrap();
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .stdin(std::fs::File::open(input.path()).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn generate(seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..COUNT)
        .map(|_| {
            let mut s = String::new();
            ws(&mut rng, &mut s);
            gen_value(&mut rng, &mut s, 0);
            ws(&mut rng, &mut s);
            s
        })
        .collect()
}

#[test]
fn dumps_is_byte_identical_to_python() {
    if !python_available() {
        return;
    }
    let lines = generate(0x05b1_1d00);
    let script = "import json,sys\n\
        for line in sys.stdin.buffer.read().decode().split('\\n')[:-1]:\n\
        \x20   print(json.dumps(json.loads(line), sort_keys=True))\n";
    let want = run_python(script, &lines);
    assert_eq!(want.len(), lines.len());
    let mut failures = Vec::new();
    for (line, want) in lines.iter().zip(&want) {
        let got = json::parse(line)
            .map(|v| json::dumps(&v))
            .unwrap_or_else(|e| format!("ERROR {e}"));
        if &got != want {
            failures.push(format!("input  {line}\npython {want}\nours   {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ, first ones:\n{}",
        failures.len(),
        lines.len(),
        failures[..failures.len().min(5)].join("\n\n")
    );
}

#[test]
fn dumps_pretty_is_byte_identical_to_python_indent_2() {
    if !python_available() {
        return;
    }
    let lines: Vec<String> = generate(42).into_iter().take(800).collect();
    // Each pretty text is itself encoded as a JSON string so it fits on one line.
    let script = "import json,sys\n\
        for line in sys.stdin.buffer.read().decode().split('\\n')[:-1]:\n\
        \x20   print(json.dumps(json.dumps(json.loads(line), indent=2, sort_keys=True)))\n";
    let want = run_python(script, &lines);
    for (line, want) in lines.iter().zip(&want) {
        let v = json::parse(line).unwrap();
        let got = json::dumps(&json::Value::String(json::dumps_pretty(&v)));
        assert_eq!(&got, want, "input {line}");
    }
}

#[test]
fn python_and_we_reject_the_same_documents() {
    if !python_available() {
        return;
    }
    let bad: Vec<String> = [
        "",
        "[1,]",
        "{\"a\":1,}",
        "01",
        "1.",
        ".5",
        "+1",
        "[1 2]",
        "{'a': 1}",
        "\"\\x\"",
        "\"a\tb\"",
        "nan",
        "infinity",
        "-",
        "--1",
        "1e",
        "[",
        "{\"a\"}",
        "true false",
        "\"\\u12\"",
        "1e5.0",
        "0x10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let script = "import json,sys\n\
        for line in sys.stdin.buffer.read().decode().split('\\n')[:-1]:\n\
        \x20   try:\n\
        \x20       json.loads(line); print('ok')\n\
        \x20   except ValueError:\n\
        \x20       print('error')\n";
    let want = run_python(script, &bad);
    for (line, want) in bad.iter().zip(&want) {
        assert_eq!(want, "error", "python accepted {line:?}");
        assert!(json::parse(line).is_err(), "we accepted {line:?}");
    }
}
