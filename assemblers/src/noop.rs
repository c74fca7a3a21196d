//! `org.osbuild.noop`: produces nothing, prints its options (as osbuild v10 does).

use serde_json::Value;

use crate::args::Arguments;
use crate::AssemblerError;

/// Prints `Not doing anything with these options: <json>`.
pub fn assemble(args: &Arguments) -> Result<(), AssemblerError> {
    println!("{}", message(&Value::Object(args.options.clone())));
    Ok(())
}

/// The line printed, with the options in Python `json.dumps` style (`", "` and `": "`
/// separators, non-ASCII escaped); keys come out sorted.
pub fn message(options: &Value) -> String {
    let mut out = String::from("Not doing anything with these options: ");
    python_style(options, &mut out);
    out
}

fn python_style(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_style(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_string(k, out);
                out.push_str(": ");
                python_style(item, out);
            }
            out.push('}');
        }
        Value::String(s) => push_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn push_string(s: &str, out: &mut String) {
    let escaped = Value::String(s.to_owned()).to_string();
    for c in escaped.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_table() {
        let cases = [
            ("{}", "{}"),
            // Insertion order, as Python prints a dict.
            (r#"{"b": [1, 2], "a": "x"}"#, r#"{"b": [1, 2], "a": "x"}"#),
            (r#"{"k": "é😀\"\n"}"#, r#"{"k": "\u00e9\ud83d\ude00\"\n"}"#),
            (
                r#"{"n": null, "t": true, "f": 1.5}"#,
                r#"{"n": null, "t": true, "f": 1.5}"#,
            ),
        ];
        for (input, want) in cases {
            let v: Value = serde_json::from_str(input).unwrap();
            assert_eq!(
                message(&v),
                format!("Not doing anything with these options: {want}"),
                "{input}"
            );
        }
    }
}
