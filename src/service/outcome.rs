//! A finished job's result, in the two forms the bus gives it: the full result for its owner
//! (`Job.GetResult`: osbuild v10's `--json` result for a v1 manifest, osbuild HEAD's for a v2
//! one), and the public summary `JobFinished` broadcasts (ids, names and success only: no
//! option, no output, no error text but "cancelled").

use super::request::JobRequest;
use super::scheduler::JobState;
use crate::json::{self, Map, Value};
use crate::pipeline::{
    find_v2_pipeline, BuildError, ModuleResult, PipelineResult, V2Request, V2Result,
};

/// What a build thread built, in its manifest format's result.
pub(crate) enum Built {
    V1(PipelineResult),
    V2(V2Result),
}

impl From<PipelineResult> for Built {
    fn from(r: PipelineResult) -> Self {
        Built::V1(r)
    }
}

/// A finished job as the bus shows it.
pub(crate) struct Ending {
    pub state: JobState,
    /// The full result's JSON, within [`MAX_RESULT_BYTES`]: for the owner only.
    pub full: String,
    /// The summary's JSON, for everyone.
    pub summary: String,
}

/// The most bytes of a job's full result kept for `Job.GetResult`, well below the system bus's
/// 32 MiB message limit: each module keeps at most 1 MiB of output, but a build of many chatty
/// stages could still pass it.
pub(crate) const MAX_RESULT_BYTES: usize = 16 << 20;

/// The ending of `request`'s job whose build gave `result`.
pub(crate) fn ending(request: &JobRequest, result: Result<Built, BuildError>) -> Ending {
    let failed = |state, message: &str| (state, failure(message));
    let (state, v1) = match result {
        Ok(Built::V2(r)) => return v2_ending(request, r),
        Ok(Built::V1(r)) if r.success => (JobState::Succeeded, r),
        Ok(Built::V1(r)) => (JobState::Failed, r),
        Err(BuildError::Cancelled) => failed(JobState::Cancelled, "cancelled"),
        Err(e) => failed(JobState::Failed, &e.to_string()),
    };
    let summary = match request {
        JobRequest::V2(r) => v2_summary(r, None, state),
        JobRequest::V1(_) => public_summary(&v1, state).to_json(),
    };
    Ending {
        state,
        full: fit_for_the_bus(v1),
        summary,
    }
}

fn v2_ending(request: &JobRequest, mut r: V2Result) -> Ending {
    let state = if r.success {
        JobState::Succeeded
    } else {
        JobState::Failed
    };
    let summary = match request {
        JobRequest::V2(req) => v2_summary(req, Some(&r), state),
        JobRequest::V1(_) => unreachable!("a v2 result comes from a v2 request"),
    };
    let full = fit(&mut r, |r| json::dumps(&r.to_json()), v2_outputs_mut);
    Ending {
        state,
        full,
        summary,
    }
}

/// The result of a build that could not be carried out, in v10's result shape (also for a v2
/// manifest: HEAD has no result for a build that could not run).
fn failure(message: &str) -> PipelineResult {
    PipelineResult {
        success: false,
        error: Some(message.to_owned()),
        ..PipelineResult::success()
    }
}

/// What `JobFinished` tells every local user of a v1 job: the full result's shape with each
/// stage's `options` and `output` null, and no error text but "cancelled" (errors may quote
/// stage output or a source URL; the owner reads them with `Job.GetResult`).
fn public_summary(r: &PipelineResult, state: JobState) -> PipelineResult {
    let module = |m: &ModuleResult| ModuleResult {
        options: json::Value::Null,
        output: None,
        ..m.clone()
    };
    PipelineResult {
        success: r.success,
        error: (state == JobState::Cancelled).then(|| "cancelled".to_owned()),
        build: r.build.as_ref().map(|b| Box::new(public_summary(b, state))),
        stages: r.stages.as_ref().map(|s| s.iter().map(module).collect()),
        tree_id: r.tree_id.clone(),
        assembler: r.assembler.as_ref().map(module),
        output_id: r.output_id.clone(),
    }
}

/// What `JobFinished` tells every local user of a v2 job: `success`, the exports' tree ids
/// (`{"NAME": ID}`, null for a pipeline without stages), and per pipeline that ran stages its
/// name, id and success with each stage's type (`name`), id and success; `"error":
/// "cancelled"` when cancelled, no other error text.
fn v2_summary(request: &V2Request, result: Option<&V2Result>, state: JobState) -> String {
    let id_value = |id: Option<&crate::id::ObjectId>| id.map_or(Value::Null, |i| i.as_str().into());
    let exports = request.exports.iter().map(|name| {
        let pipeline = find_v2_pipeline(&request.manifest, name);
        (name.clone(), id_value(pipeline.and_then(|p| p.id())))
    });
    let log = result.map_or(&[][..], |r| &r.log[..]);
    let pipelines = log
        .iter()
        .filter(|(_, stages)| !stages.is_empty())
        .map(|(name, stages)| {
            let pipeline = request.manifest.get(name);
            let stages: Vec<Value> = stages
                .iter()
                .map(|s| {
                    object([
                        ("name", s.module.as_str().into()),
                        ("id", s.id.as_str().into()),
                        ("success", s.success.into()),
                    ])
                })
                .collect();
            let success = stages
                .iter()
                .all(|s| s.get("success") == Some(&true.into()));
            object([
                ("name", name.as_str().into()),
                ("id", id_value(pipeline.and_then(|p| p.id()))),
                ("success", success.into()),
                ("stages", Value::Array(stages)),
            ])
        });
    let mut summary = Map::from_iter([
        ("success".to_owned(), (state == JobState::Succeeded).into()),
        ("exports".to_owned(), Value::Object(exports.collect())),
        ("pipelines".to_owned(), Value::Array(pipelines.collect())),
    ]);
    if state == JobState::Cancelled {
        summary.insert("error".into(), "cancelled".into());
    }
    json::dumps(&Value::Object(summary))
}

fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// A v1 result's JSON within [`MAX_RESULT_BYTES`] (see [`fit`]).
pub(crate) fn fit_for_the_bus(mut result: PipelineResult) -> String {
    fit(&mut result, PipelineResult::to_json, outputs_mut)
}

/// `result`'s JSON within [`MAX_RESULT_BYTES`]: outputs are dropped, earliest first (the
/// stage that failed, usually the last, keeps its own), each replaced by a notice.
fn fit<R>(
    result: &mut R,
    to_json: impl Fn(&R) -> String,
    outputs: impl Fn(&mut R) -> Vec<&mut String>,
) -> String {
    let mut text = to_json(result);
    let mut next = 0;
    while text.len() > MAX_RESULT_BYTES {
        let mut all = outputs(result);
        let Some(output) = all.get_mut(next) else {
            break;
        };
        let dropped = output.len();
        **output = format!(
            "[... {dropped} bytes of output dropped: the whole result would not fit a D-Bus message; the daemon's journal has every line]"
        );
        next += 1;
        text = to_json(result);
    }
    text
}

/// Every module's output of a v1 result, in the order the modules ran.
fn outputs_mut(result: &mut PipelineResult) -> Vec<&mut String> {
    let mut out = Vec::new();
    if let Some(build) = result.build.as_deref_mut() {
        out.extend(outputs_mut(build));
    }
    let modules = result
        .stages
        .iter_mut()
        .flatten()
        .chain(result.assembler.as_mut());
    out.extend(modules.filter_map(|m| m.output.as_mut()));
    out
}

/// Every stage's output of a v2 result, in the order the stages ran.
fn v2_outputs_mut(result: &mut V2Result) -> Vec<&mut String> {
    let stages = result
        .log
        .iter_mut()
        .flat_map(|(_, stages)| stages.iter_mut());
    stages.map(|s| &mut s.output).collect()
}
