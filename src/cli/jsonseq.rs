//! `--monitor JSONSeqMonitor`: the build's progress as RFC 7464 JSON text sequences in osbuild
//! HEAD's shape (`osbuild/monitor.py`), which osbuild/images reads for the progress bars of
//! bootc-image-builder and image-builder.
//!
//! Each record is `0x1E`, one JSON object, `\n`, with the keys that have a value of
//! `message`, `result`, `context`, `progress`, `options`, `timestamp`, `duration`, `metadata`:
//! - `context`: `{"origin", "pipeline": {"name", "id", "stage": {"name", "id"}}, "id"}`, where
//!   `id` is the sha256 of that object (without `id`, nulls kept, keys sorted); once an id was
//!   sent, later records carry only `{"id"}`. Nulls are left out of what is sent.
//!   Origin `osbuild.monitor` marks status messages, `stages/NAME` a stage's output;
//! - `progress`: `{"name": "pipelines/sources", "total", "done", "progress"?: {"name":
//!   "pipeline: NAME", "total": stages, "done"}}`;
//! - a finished module's record has `result` (`{"name", "id", "success", "output", "error"}`,
//!   output cut to its last 31,000 bytes), `duration`, `options` and `metadata`.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::events::{Event, Monitor};
use crate::id::hex;
use crate::json::{self, Map, Value};

/// HEAD cuts a result's output to this many bytes (osbuild/images reads records with a
/// bounded scanner).
const MAX_RESULT_OUTPUT: usize = 31_000;

/// Where a count stands.
#[derive(Clone)]
struct Progress {
    name: String,
    total: usize,
    done: usize,
}

impl Progress {
    fn to_json(&self) -> Map {
        Map::from_iter([
            ("name".to_owned(), Value::from(self.name.as_str())),
            ("total".to_owned(), Value::from(self.total as i64)),
            ("done".to_owned(), Value::from(self.done as i64)),
        ])
    }
}

/// Writes JSON-seq records to `out`.
pub struct JsonSeqMonitor<W: Write> {
    out: W,
    /// Pipelines and sources: `total` steps.
    steps: Progress,
    /// The stages of the current pipeline.
    stages: Option<Progress>,
    pipeline: (Option<String>, Option<String>),
    stage: (Option<String>, Option<String>),
    options: Value,
    output: String,
    started: Option<Instant>,
    sent_contexts: HashSet<String>,
}

impl<W: Write> JsonSeqMonitor<W> {
    /// A monitor for a build of `total_steps` (sources plus pipelines to build).
    pub fn new(out: W, total_steps: usize) -> Self {
        Self {
            out,
            steps: Progress {
                name: "pipelines/sources".into(),
                total: total_steps,
                done: 0,
            },
            stages: None,
            pipeline: (None, None),
            stage: (None, None),
            options: Value::Object(Map::new()),
            output: String::new(),
            started: None,
            sent_contexts: HashSet::new(),
        }
    }

    /// A status message (origin `osbuild.monitor`, or `origin`).
    pub fn log(&mut self, message: &str, origin: &str) {
        let record = self.record(message, origin);
        self.send(record);
    }

    fn record(&mut self, message: &str, origin: &str) -> Map {
        let mut r = Map::new();
        r.insert("message".into(), Value::from(message));
        r.insert("context".into(), self.context(origin));
        r.insert("progress".into(), Value::Object(self.progress()));
        r.insert("timestamp".into(), Value::from(now()));
        r
    }

    fn progress(&self) -> Map {
        let mut p = self.steps.to_json();
        if let Some(stages) = &self.stages {
            p.insert("progress".into(), Value::Object(stages.to_json()));
        }
        p
    }

    /// The context in full the first time its id is sent, then only `{"id"}`.
    fn context(&mut self, origin: &str) -> Value {
        let opt = |s: &Option<String>| Value::from(s.as_deref());
        let stage = Map::from_iter([
            ("name".to_owned(), opt(&self.stage.0)),
            ("id".to_owned(), opt(&self.stage.1)),
        ]);
        let pipeline = Map::from_iter([
            ("name".to_owned(), opt(&self.pipeline.0)),
            ("id".to_owned(), opt(&self.pipeline.1)),
            ("stage".to_owned(), Value::Object(stage)),
        ]);
        let mut ctx = Map::from_iter([
            ("origin".to_owned(), Value::from(origin)),
            ("pipeline".to_owned(), Value::Object(pipeline)),
        ]);
        let id = hex(&Sha256::digest(json::dumps(&Value::Object(ctx.clone()))));
        if !self.sent_contexts.insert(id.clone()) {
            return Value::Object(Map::from_iter([("id".to_owned(), Value::from(id))]));
        }
        ctx.insert("id".into(), Value::from(id));
        Value::Object(ctx)
    }

    fn send(&mut self, record: Map) {
        let mut record = Value::Object(record);
        omit_empty(&mut record);
        // A reader that went away must not fail the build.
        let _ = self
            .out
            .write_all(format!("\x1e{}\n", json::dumps(&record)).as_bytes())
            .and_then(|()| self.out.flush());
    }
}

impl<W: Write> Monitor for JsonSeqMonitor<W> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::PipelineStarted { name, id, stages } => {
                self.pipeline = (Some(name.to_owned()), id.map(ToString::to_string));
                self.stage = (None, None);
                self.stages = (stages > 0).then(|| Progress {
                    name: format!("pipeline: {name}"),
                    total: stages,
                    done: 0,
                });
                self.log(&format!("Starting pipeline {name}"), "osbuild.monitor");
            }
            Event::PipelineFinished { name, .. } => self.finish_step(name),
            Event::ModuleStarted {
                name, id, options, ..
            } => {
                self.stage = (Some(name.to_owned()), Some(id.to_string()));
                self.options = options.clone();
                self.output.clear();
                self.started = Some(Instant::now());
                self.log(&format!("Starting module {name}"), "osbuild.monitor");
            }
            Event::Output { line } => {
                self.output.push_str(line);
                self.output.push('\n');
                let origin = format!("stages/{}", self.stage.0.as_deref().unwrap_or(""));
                let record = self.record(&format!("{line}\n"), &origin);
                self.send(record);
            }
            Event::ModuleFinished {
                name,
                id,
                success,
                error,
                metadata,
                ..
            } => {
                if let Some(stages) = &mut self.stages {
                    stages.done += 1;
                }
                let result = Map::from_iter([
                    ("name".to_owned(), Value::from(name)),
                    ("id".to_owned(), Value::from(id.as_str())),
                    ("success".to_owned(), Value::from(success)),
                    ("output".to_owned(), Value::from(capped(&self.output))),
                    ("error".to_owned(), error.cloned().unwrap_or(Value::Null)),
                ]);
                let mut record = self.record(&format!("Finished module {name}"), "osbuild.monitor");
                record.insert("result".into(), Value::Object(result));
                if let Some(started) = self.started.take() {
                    record.insert(
                        "duration".into(),
                        Value::from(started.elapsed().as_secs_f64()),
                    );
                }
                if self.options.is_truthy() {
                    record.insert("options".into(), self.options.clone());
                }
                if let Some(md) = metadata.filter(|m| m.is_truthy()) {
                    record.insert("metadata".into(), md.clone());
                }
                self.send(record);
            }
            Event::SourceStarted { name, .. } => {
                self.pipeline = (Some(name.to_owned()), None);
                self.stage = (None, None);
                self.stages = None;
                self.log(&format!("Starting pipeline {name}"), "osbuild.monitor");
            }
            Event::SourceProgress { .. } => {}
            Event::SourceFinished { name, .. } => self.finish_step(name),
        }
    }
}

impl<W: Write> JsonSeqMonitor<W> {
    /// A pipeline or source is done: one step more, no stage progress.
    fn finish_step(&mut self, name: &str) {
        self.steps.done += 1;
        self.stages = None;
        self.log(&format!("Finished pipeline {name}"), "osbuild.monitor");
    }
}

/// HEAD's cut: the last [`MAX_RESULT_OUTPUT`] bytes after a note of how many were hidden.
fn capped(output: &str) -> String {
    if output.len() <= MAX_RESULT_OUTPUT {
        return output.to_owned();
    }
    let mut cut = output.len() - MAX_RESULT_OUTPUT;
    while !output.is_char_boundary(cut) {
        cut += 1;
    }
    format!("[...{cut} bytes hidden...]\n{}", &output[cut..])
}

/// HEAD's `omitempty`: drops null and `""` values from objects, recursively through objects.
fn omit_empty(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, v| !matches!(v, Value::Null) && v.as_str() != Some(""));
        for v in m.values_mut() {
            omit_empty(v);
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectId;
    use crate::modules::ModuleKind;

    fn records(bytes: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.starts_with('\x1e') && text.ends_with('\n'));
        text.split('\x1e')
            .skip(1)
            .map(|r| {
                json::parse(r.strip_suffix('\n').expect("a newline ends each record")).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_pipeline_with_one_stage_in_heads_shape() {
        let id = ObjectId::parse(&"a".repeat(64)).unwrap();
        let mut out = Vec::new();
        {
            let mut m = JsonSeqMonitor::new(&mut out, 1);
            m.event(Event::PipelineStarted {
                name: "os",
                id: Some(&id),
                stages: 1,
            });
            let options = json::parse(r#"{"x": 1}"#).unwrap();
            m.event(Event::ModuleStarted {
                kind: ModuleKind::Stage,
                name: "org.osbuild.noop",
                id: &id,
                options: &options,
                depth: 0,
                index: 0,
                total: 1,
            });
            m.event(Event::Output { line: "hi" });
            m.event(Event::ModuleFinished {
                kind: ModuleKind::Stage,
                name: "org.osbuild.noop",
                id: &id,
                success: true,
                seconds: 0.1,
                error: None,
                metadata: None,
            });
            m.event(Event::PipelineFinished {
                name: "os",
                success: true,
            });
        }
        let r = records(&out);
        let messages: Vec<&str> = r
            .iter()
            .map(|r| r.get("message").and_then(Value::as_str).unwrap())
            .collect();
        assert_eq!(
            messages,
            [
                "Starting pipeline os",
                "Starting module org.osbuild.noop",
                "hi\n",
                "Finished module org.osbuild.noop",
                "Finished pipeline os"
            ]
        );
        // The first context is sent whole (nulls left out), its id is sha256 of the context
        // with nulls and sorted keys.
        let ctx = r[0].get("context").unwrap();
        let want_id = hex(&Sha256::digest(format!(
            r#"{{"origin": "osbuild.monitor", "pipeline": {{"id": "{id}", "name": "os", "stage": {{"id": null, "name": null}}}}}}"#
        )));
        assert_eq!(
            ctx.get("id").and_then(Value::as_str),
            Some(want_id.as_str())
        );
        assert_eq!(
            json::dumps(ctx.get("pipeline").unwrap().get("stage").unwrap()),
            "{}"
        );
        assert_eq!(
            r[2].get("context")
                .unwrap()
                .get("origin")
                .and_then(Value::as_str),
            Some("stages/org.osbuild.noop")
        );
        let done = r[3].get("result").unwrap();
        assert_eq!(done.get("output").and_then(Value::as_str), Some("hi\n"));
        assert!(done.get("error").is_none(), "null is left out");
        assert_eq!(json::dumps(r[3].get("options").unwrap()), r#"{"x": 1}"#);
        let p = r[3].get("progress").unwrap();
        assert_eq!(
            json::dumps(p),
            r#"{"done": 0, "name": "pipelines/sources", "progress": {"done": 1, "name": "pipeline: os", "total": 1}, "total": 1}"#
        );
        assert_eq!(
            json::dumps(r[4].get("progress").unwrap()),
            r#"{"done": 1, "name": "pipelines/sources", "total": 1}"#
        );
    }

    #[test]
    fn a_context_sent_before_is_only_its_id() {
        let mut out = Vec::new();
        {
            let mut m = JsonSeqMonitor::new(&mut out, 0);
            m.log("one", "osbuild.main_cli");
            m.log("two", "osbuild.main_cli");
        }
        let r = records(&out);
        let first = r[0].get("context").unwrap();
        let second = r[1].get("context").unwrap();
        assert!(first.get("origin").is_some());
        assert_eq!(second.as_object().unwrap().len(), 1);
        assert_eq!(second.get("id"), first.get("id"));
    }

    #[test]
    fn long_output_is_cut_as_head_cuts_it() {
        let long = "x".repeat(MAX_RESULT_OUTPUT + 5);
        assert_eq!(
            capped(&long),
            format!("[...5 bytes hidden...]\n{}", "x".repeat(MAX_RESULT_OUTPUT))
        );
    }
}
