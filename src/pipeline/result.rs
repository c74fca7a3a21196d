//! A module's result from its run. The result document itself, its v10 shape and its text,
//! is [`osbuild_protocol::result`].

pub use osbuild_protocol::result::{ModuleResult, PipelineResult};

use crate::buildroot::RunResult;
use crate::manifest::Stage;

/// The result of running `module` (v10 `BuildResult.as_dict()`).
pub(crate) fn module_result(module: &Stage, run: &RunResult) -> ModuleResult {
    ModuleResult {
        name: module.name.clone(),
        id: module.id.to_string(),
        options: module.options.clone(),
        success: run.success(),
        output: run.connected.then(|| run.output.clone()),
    }
}
