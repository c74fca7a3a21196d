//! `org.osbuild.tmpfilesd`: writes `/usr/lib/tmpfiles.d/FILENAME`, one tmpfiles.d(5) line per
//! entry of `config`, as HEAD does: `TYPE PATH` then the optional fields (mode, user, group,
//! age, argument) up to the last one given, with `-` for those before it that are not.

use crate::args::{Args, Opts};
use crate::error::StageError;
use crate::tree;

const DIR: &str = "usr/lib/tmpfiles.d";
/// The optional fields of a line, in their order.
const FIELDS: [&str; 5] = ["mode", "user", "group", "age", "argument"];

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let filename = opts.str("filename")?;
    if !file_name_is_valid(filename) {
        return Err(StageError::option(
            "filename",
            format!("{filename:?} is not a plain file name ending in .conf"),
        ));
    }
    let entries = opts.object_list("config")?;
    if entries.is_empty() {
        return Err(StageError::option("config", "must have at least one entry"));
    }
    let mut text = String::new();
    for entry in &entries {
        text.push_str(&line(entry)?);
        text.push('\n');
    }
    tree::write_file(
        &args.tree,
        &format!("{DIR}/{filename}"),
        text.as_bytes(),
        0o644,
    )?;
    Ok(0)
}

/// HEAD's pattern: word characters, `.` and `-`, then `.conf`.
pub fn file_name_is_valid(name: &str) -> bool {
    name.strip_suffix(".conf").is_some_and(|stem| {
        !stem.is_empty()
            && name.len() <= 255
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
    })
}

fn line(entry: &Opts) -> Result<String, StageError> {
    let mut words = vec![field(entry, "type")?, field(entry, "path")?];
    let optional: Vec<Option<&str>> = FIELDS
        .iter()
        .map(|key| Ok(entry.opt_str(key)?.filter(|v| !v.is_empty())))
        .collect::<Result<_, StageError>>()?;
    let given = optional
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i + 1);
    for (i, value) in optional[..given].iter().enumerate() {
        let value = value.unwrap_or("-");
        if value.contains(char::is_whitespace) && FIELDS[i] != "argument" {
            return Err(StageError::option(
                entry.name(FIELDS[i]),
                format!("{value:?} must not contain white space"),
            ));
        }
        words.push(value);
    }
    if let Some(bad) = words.iter().find(|w| w.contains('\n')) {
        return Err(StageError::option(
            entry.name("argument"),
            format!("{bad:?} must not contain a line break"),
        ));
    }
    Ok(words.join(" "))
}

/// A required field of a line: not empty and without white space.
fn field<'a>(entry: &Opts<'a>, key: &str) -> Result<&'a str, StageError> {
    let value = entry.str(key)?;
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(StageError::option(
            entry.name(key),
            format!("{value:?} must be a word without white space"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(config: serde_json::Value) -> Result<Vec<String>, String> {
        let options = json!({"filename": "x.conf", "config": config});
        let args = Args::parse(&json!({"tree": "/t", "options": options}).to_string()).unwrap();
        let opts = args.opts();
        let entries = opts.object_list("config").unwrap();
        entries
            .iter()
            .map(|e| line(e).map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn lines_as_heads() {
        assert_eq!(
            lines(json!([
                {"type": "d", "path": "/var/lib/x"},
                {"type": "d", "path": "/run/y", "mode": "0755", "user": "root"},
                {"type": "L+", "path": "/etc/z", "argument": "/usr/share/z"},
                {"type": "f", "path": "/a", "group": "wheel", "age": ""},
                {"type": "w", "path": "/b", "argument": "two words"}
            ]))
            .unwrap(),
            [
                "d /var/lib/x",
                "d /run/y 0755 root",
                "L+ /etc/z - - - - /usr/share/z",
                "f /a - - wheel",
                "w /b - - - - two words"
            ]
        );
        assert_eq!(
            lines(json!([{"type": "d", "path": "/x"}, {"type": "d", "path": "/y", "user": "a b"}]))
                .unwrap_err(),
            "option \"config[1].user\": \"a b\" must not contain white space"
        );
        assert_eq!(
            lines(json!([{"type": "d"}])).unwrap_err(),
            "option \"config[0].path\": is required"
        );
    }

    #[test]
    fn file_names() {
        for (name, ok) in [
            ("a.conf", true),
            ("my-app_1.2.conf", true),
            (".conf", false),
            ("a.cfg", false),
            ("../a.conf", false),
            ("a/b.conf", false),
        ] {
            assert_eq!(file_name_is_valid(name), ok, "{name}");
        }
    }
}
