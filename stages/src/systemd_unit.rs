//! `org.osbuild.systemd.unit` (a drop-in for a unit: `/usr/lib/systemd/system/UNIT.d/DROPIN`,
//! `user` for `unit-type: global`) and `org.osbuild.systemd.unit.create` (a unit file in
//! `/usr/lib/systemd` or `/etc/systemd`, `system` or `user`), both written from `config`
//! (section to option to value) in the layout HEAD's configparser gives them: `[Section]`,
//! one `Option=value` line per value (one per item of a list; an `Environment` item
//! `{"key", "value"}` is `"KEY=VALUE"` quoted), booleans as `True`/`False`, a blank line after
//! each section.

use serde_json::Value;

use crate::args::{Args, Opts};
use crate::error::StageError;
use crate::tmpfilesd;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let unit = opts.str("unit")?;
    check_unit_name("unit", unit, &["service", "timer"])?;
    if unit.len() + ".d".len() > 255 {
        return Err(StageError::option(
            "unit",
            format!("{unit:?}: its drop-in directory name is longer than 255 characters"),
        ));
    }
    let dropin = opts.str("dropin")?;
    if !tmpfilesd::file_name_is_valid(dropin) {
        return Err(StageError::option(
            "dropin",
            format!("{dropin:?} is not a plain file name ending in .conf"),
        ));
    }
    let kind = unit_kind(&opts)?;
    let text = render(&opts)?;
    let path = format!("usr/lib/systemd/{kind}/{unit}.d/{dropin}");
    tree::write_file(&args.tree, &path, text.as_bytes(), 0o644)?;
    println!("/{path} written.");
    Ok(0)
}

pub fn run_create(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let filename = opts.str("filename")?;
    check_unit_name(
        "filename",
        filename,
        &["service", "mount", "socket", "swap"],
    )?;
    let kind = unit_kind(&opts)?;
    let base = match opts.choice("unit-path", &["usr", "etc"], Some("usr"))? {
        "usr" => "usr/lib/systemd",
        _ => "etc/systemd",
    };
    let text = render(&opts)?;
    let path = format!("{base}/{kind}/{filename}");
    tree::write_file(&args.tree, &path, text.as_bytes(), 0o644)?;
    println!("/{path} written.");
    Ok(0)
}

/// `system` or `user`, from `unit-type` (`system` or `global`).
fn unit_kind(opts: &Opts) -> Result<&'static str, StageError> {
    Ok(
        match opts.choice("unit-type", &["system", "global"], Some("system"))? {
            "system" => "system",
            _ => "user",
        },
    )
}

/// HEAD's pattern for unit names: word characters, `:`, `.`, `\` and `-`, at most one `@`,
/// and one of `suffixes`.
fn check_unit_name(key: &str, name: &str, suffixes: &[&str]) -> Result<(), StageError> {
    let stem = name
        .rsplit_once('.')
        .filter(|(_, suffix)| suffixes.contains(suffix))
        .map(|(stem, _)| stem);
    let valid = stem.is_some_and(|stem| {
        !stem.is_empty()
            && !stem.starts_with('@')
            && stem.matches('@').count() <= 1
            && stem
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '\\' | '-' | '@'))
    });
    if valid && name != "." && name != ".." {
        Ok(())
    } else {
        Err(StageError::option(
            key,
            format!(
                "{name:?} is not a unit name ending in .{}",
                suffixes.join(", .")
            ),
        ))
    }
}

/// The unit file text for `config`.
fn render(opts: &Opts) -> Result<String, StageError> {
    let mut text = String::new();
    for (section, options) in opts.object_map("config")? {
        check_line(&options.name(""), section)?;
        text.push_str(&format!("[{section}]\n"));
        // configparser keeps one line per distinct `Option=value`, where it first came.
        let mut lines: Vec<String> = Vec::new();
        for (option, value) in options.entries() {
            for line in option_lines(&options, option, value)? {
                if !lines.contains(&line) {
                    lines.push(line);
                }
            }
        }
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
        text.push('\n');
    }
    Ok(text)
}

/// The lines of one option: one for a value, one per item of a list.
fn option_lines(section: &Opts, option: &str, value: &Value) -> Result<Vec<String>, StageError> {
    let name = section.name(option);
    let items: Vec<(String, &Value)> = match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{name}[{i}]"), v))
            .collect(),
        v => vec![(name, v)],
    };
    items
        .into_iter()
        .map(|(name, v)| {
            let text = if option == "Environment" && v.is_object() {
                environment(&name, v)?
            } else {
                scalar(&name, v)?
            };
            let line = format!("{option}={text}");
            check_line(&name, &line)?;
            Ok(line)
        })
        .collect()
}

/// `{"key": K, "value": V}` as `"K=V"`.
fn environment(name: &str, v: &Value) -> Result<String, StageError> {
    let part = |key: &str| {
        v.get(key).and_then(Value::as_str).ok_or_else(|| {
            StageError::option(format!("{name}.{key}"), "is required and must be a string")
        })
    };
    Ok(format!("\"{}={}\"", part("key")?, part("value")?))
}

/// A value as Python's `str` writes it.
fn scalar(name: &str, v: &Value) -> Result<String, StageError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(true) => Ok("True".into()),
        Value::Bool(false) => Ok("False".into()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(StageError::option(
            name,
            "must be a string, a number, a boolean or a list of them",
        )),
    }
}

/// A unit file line must stay one line.
fn check_line(name: &str, text: &str) -> Result<(), StageError> {
    if text.contains(['\n', '\r']) {
        return Err(StageError::option(
            name.trim_end_matches('.'),
            format!("{text:?} must not contain a line break"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(config: Value) -> Result<String, String> {
        let args =
            Args::parse(&json!({"tree": "/t", "options": {"config": config}}).to_string()).unwrap();
        render(&args.opts()).map_err(|e| e.to_string())
    }

    #[test]
    fn renders_as_configparser() {
        let text = rendered(json!({
            "Unit": {"Description": "x", "After": ["a.target", "b.target", "a.target"],
                     "DefaultDependencies": false},
            "Service": {"Environment": [{"key": "A", "value": "1 2"}, {"key": "B", "value": ""}],
                        "ExecStart": ["/bin/true"], "RemainAfterExit": true},
            "Swap": {"Priority": 5},
            "Install": {}
        }));
        assert_eq!(
            text.unwrap(),
            "[Unit]\nDescription=x\nAfter=a.target\nAfter=b.target\nDefaultDependencies=False\n\n\
             [Service]\nEnvironment=\"A=1 2\"\nEnvironment=\"B=\"\nExecStart=/bin/true\n\
             RemainAfterExit=True\n\n[Swap]\nPriority=5\n\n[Install]\n\n"
        );
        assert_eq!(
            rendered(json!({"Service": {"Environment": "A=b"}})).unwrap(),
            "[Service]\nEnvironment=A=b\n\n"
        );
    }

    #[test]
    fn bad_values_name_their_path() {
        for (config, want) in [
            (
                json!({"Service": {"ExecStart": ["/bin/a\n[Unit]"]}}),
                "option \"config.Service.ExecStart[0]\": \"ExecStart=/bin/a\\n[Unit]\" must not contain a line break",
            ),
            (
                json!({"Service": {"Environment": [{"key": "A"}]}}),
                "option \"config.Service.Environment[0].value\": is required and must be a string",
            ),
            (
                json!({"Unit": {"After": [{}]}}),
                "option \"config.Unit.After[0]\": must be a string, a number, a boolean or a list of them",
            ),
        ] {
            assert_eq!(rendered(config).unwrap_err(), want);
        }
    }

    #[test]
    fn unit_names() {
        for (name, ok) in [
            ("sshd.service", true),
            ("getty@tty1.service", true),
            ("a-b:c\\x2d.timer", true),
            ("x.mount", false),
            (".service", false),
            ("a@b@c.service", false),
            ("../x.service", false),
            ("a/b.service", false),
        ] {
            assert_eq!(
                check_unit_name("unit", name, &["service", "timer"]).is_ok(),
                ok,
                "{name}"
            );
        }
    }
}
