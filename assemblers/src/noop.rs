//! `org.osbuild.noop`: produces nothing, prints its options (as osbuild v10 does).

use osbuild_protocol::json;
use serde_json::Value;

use crate::args::Arguments;
use crate::AssemblerError;

/// Prints `Not doing anything with these options: <json>`.
pub fn assemble(args: &Arguments) -> Result<(), AssemblerError> {
    println!("{}", message(&Value::Object(args.options.clone())));
    Ok(())
}

/// The line printed, with the options as Python's `json.dumps` writes the dict (keys in
/// their order, `", "` and `": "` separators, non-ASCII escaped).
pub fn message(options: &Value) -> String {
    let options = json::to_python(options).expect("options are plain JSON");
    format!("Not doing anything with these options: {options}")
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
