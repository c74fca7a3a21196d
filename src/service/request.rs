//! What a job builds, from a `Build` call: a v1 manifest with its overrides (osbuild v10's
//! semantics), or a v2 manifest with the pipelines to export and checkpoint patterns (osbuild
//! HEAD's). Each call is checked here once, before anything is queued, with an error the caller
//! can act on; the scheduler then reads the ids (stage order, what makes a job done) without
//! caring which format the manifest has.

use std::collections::{BTreeSet, HashMap};

use zbus::OwnedVariant;

use super::error::{Error, Result};
use super::wire::BuildOptions;
use super::Service;
use crate::id::ObjectId;
use crate::manifest::{self, v2, Document, ManifestError, Pipeline};
use crate::modules::Index;
use crate::pipeline::{
    find_v2_pipeline, Overrides, Request, RequestError, V2Request, V2RequestError,
};

/// A validated build request of either manifest format.
pub(crate) enum JobRequest {
    V1(Request),
    V2(V2Request),
}

impl std::fmt::Debug for JobRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobRequest::V1(r) => f.debug_tuple("V1").field(r).finish(),
            JobRequest::V2(r) => f
                .debug_struct("V2")
                .field("pipelines", &r.manifest.pipelines.len())
                .field("exports", &r.exports)
                .field("checkpoints", &r.checkpoints)
                .finish(),
        }
    }
}

impl JobRequest {
    /// Every stage id the job may build, in the order they run: for v2, the stages of the
    /// exported pipelines and of every pipeline they need (build pipelines, pipelines their
    /// inputs name), in manifest order.
    pub fn order(&self) -> Vec<ObjectId> {
        match self {
            JobRequest::V1(r) => {
                let stages = r.manifest.pipeline.all_stages();
                stages.into_iter().map(|s| s.id.clone()).collect()
            }
            JobRequest::V2(r) => needed_pipelines(r)
                .iter()
                .flat_map(|p| p.stages.iter().map(|s| s.id.clone()))
                .collect(),
        }
    }

    /// The ids that, once all in the store, leave the job nothing to build (single flight's
    /// key): a v1 manifest's output, a v2 manifest's exported trees. `None` when no id does (a
    /// v1 manifest without an assembler).
    pub fn done_when(&self) -> Option<Vec<ObjectId>> {
        match self {
            JobRequest::V1(r) => r.manifest.pipeline.output_id().map(|id| vec![id.clone()]),
            JobRequest::V2(r) => Some(
                exported(r)
                    .filter_map(|(_, p)| p.and_then(v2::Pipeline::id).cloned())
                    .collect(),
            ),
        }
    }

    /// The `TreeId` property: a v1 manifest's tree, a v2 manifest's first export ("" without).
    pub fn tree_id(&self) -> String {
        let id = match self {
            JobRequest::V1(r) => r.manifest.pipeline.tree_id(),
            JobRequest::V2(r) => exported(r).next().and_then(|(_, p)| p?.id()),
        };
        id.map(ToString::to_string).unwrap_or_default()
    }

    /// The `OutputId` property: a v1 manifest's output ("" without; v2 manifests have none).
    pub fn output_id(&self) -> String {
        match self {
            JobRequest::V1(r) => r.manifest.pipeline.output_id().map(ToString::to_string),
            JobRequest::V2(_) => None,
        }
        .unwrap_or_default()
    }

    /// Tells the sources that the caller is not root (see `Request::unprivileged_caller`).
    pub fn set_unprivileged_caller(&mut self, unprivileged: bool) {
        match self {
            JobRequest::V1(r) => r.unprivileged_caller = unprivileged,
            JobRequest::V2(r) => r.unprivileged_caller = unprivileged,
        }
    }
}

/// The exports of `r` with their pipelines.
fn exported(r: &V2Request) -> impl Iterator<Item = (&String, Option<&v2::Pipeline>)> {
    r.exports
        .iter()
        .map(|e| (e, find_v2_pipeline(&r.manifest, e)))
}

/// The exported pipelines and everything they need, in manifest order (a pipeline refers only
/// to earlier ones, so this is an order to build them in). Unlike the build's own depsolve it
/// ignores the store: it is what the job may build, not what it will.
fn needed_pipelines(r: &V2Request) -> Vec<&v2::Pipeline> {
    let manifest = &r.manifest;
    let mut needed: BTreeSet<usize> = BTreeSet::new();
    let mut check: Vec<&v2::Pipeline> = exported(r).filter_map(|(_, p)| p).collect();
    while let Some(p) = check.pop() {
        let Some(at) = manifest.pipelines.iter().position(|q| std::ptr::eq(q, p)) else {
            continue;
        };
        if !needed.insert(at) {
            continue;
        }
        let build = p.build.iter().map(ObjectId::as_str);
        let inputs = p.stages.iter().flat_map(|s| s.inputs.values());
        let referenced = inputs
            .filter(|i| i.origin == v2::Origin::Pipeline)
            .flat_map(|i| i.references.iter().map(|(r, _)| r.as_str()));
        check.extend(
            build
                .chain(referenced)
                .filter_map(|id| find_v2_pipeline(manifest, id)),
        );
    }
    needed.into_iter().map(|i| &manifest.pipelines[i]).collect()
}

/// A refused v1 request as the caller reads it (the messages clients and tests know).
fn request_error(e: RequestError) -> Error {
    match e {
        RequestError::Manifest(e) | RequestError::BuildEnv(e) => {
            Error::InvalidManifest(format!("invalid manifest:\n{e}"))
        }
        RequestError::SourcesNotObject => {
            Error::InvalidOption("option 'sources' must be a JSON object".into())
        }
        RequestError::SourcesNotJson(e) => {
            Error::InvalidOption(format!("option 'sources' is not valid JSON: {e}"))
        }
        // Never echo the text: it is a secret.
        RequestError::SecretsNotJson(_) | RequestError::SecretsNotObject => {
            Error::InvalidOption("option 'secrets' must be a JSON object".into())
        }
        RequestError::UnknownCheckpoints(list) => {
            let first = list.first().map(String::as_str).unwrap_or_default();
            Error::UnknownCheckpoint(if is_pattern(first) {
                format!(
                    "checkpoint '{first}' is a pattern: patterns are for v2 manifests; the checkpoints of a v1 manifest are stage ids (osbuildctl inspect shows them)"
                )
            } else {
                format!(
                    "checkpoint '{first}' is not the id of a stage of this manifest (osbuildctl inspect shows them)"
                )
            })
        }
    }
}

/// Whether a checkpoint is an `fnmatch` pattern rather than an id.
fn is_pattern(checkpoint: &str) -> bool {
    checkpoint.contains(['*', '?', '['])
}

/// Every runner the pipeline and its build pipelines need exists.
fn check_runners(index: &Index, pipeline: &Pipeline) -> Result<()> {
    let r = match &pipeline.build {
        None => index.host_runner(),
        Some(b) => index.resolve_runner(&b.runner),
    };
    r.map_err(|e| Error::RunnerNotFound(e.to_string()))?;
    match &pipeline.build {
        Some(b) => check_runners(index, &b.pipeline),
        None => Ok(()),
    }
}

/// The runner of every needed v2 pipeline with stages exists: the one its build pipeline
/// names, else the host's (as the build chooses it).
fn check_v2_runners(index: &Index, r: &V2Request) -> Result<()> {
    for p in needed_pipelines(r)
        .into_iter()
        .filter(|p| !p.stages.is_empty())
    {
        let named = p.build.as_ref().and_then(|b| {
            let build = r.manifest.pipelines.iter().rev();
            build
                .filter(|q| q.id() == Some(b))
                .find_map(|q| q.runner.as_deref())
        });
        match named {
            Some(runner) => index.resolve_runner(runner),
            None => index.host_runner(),
        }
        .map_err(|e| Error::RunnerNotFound(format!("pipeline {}: {e}", p.name)))?;
    }
    Ok(())
}

pub(crate) fn check_manifest_size(svc: &Service, manifest: &str) -> Result<()> {
    let limit = svc.scheduler.limits().max_manifest_bytes;
    if manifest.len() > limit {
        return Err(Error::ManifestTooLarge(format!(
            "the manifest has {} bytes; this daemon accepts at most {limit} (osbuildd --max-manifest-bytes)",
            manifest.len()
        )));
    }
    Ok(())
}

/// Validates a `Build` call into a request; no side effect.
pub(crate) fn validate(
    svc: &Service,
    manifest: &str,
    options: HashMap<String, OwnedVariant>,
) -> Result<JobRequest> {
    check_manifest_size(svc, manifest)?;
    let opts = BuildOptions::from_dict(options).map_err(Error::InvalidOption)?;
    let exports = opts.exports.clone();
    let overrides = Overrides {
        sources: opts.sources.clone(),
        secrets: opts.secrets.clone(),
        checkpoints: opts.checkpoints.clone().unwrap_or_default(),
        build_env: None,
        source_epoch: opts.source_epoch,
    };
    let request = match Request::new(manifest, &svc.index, overrides) {
        Err(RequestError::Manifest(ManifestError::V2NotBuildable)) => {
            return validate_v2(svc, manifest, opts)
        }
        other => other.map_err(request_error)?,
    };
    if exports.is_some() {
        return Err(Error::InvalidOption(
            "option 'exports' is for v2 manifests; a v1 manifest builds its one pipeline, whose output ExportOutput fetches (osbuildctl build --output)".into(),
        ));
    }
    check_runners(&svc.index, &request.manifest.pipeline)?;
    Ok(JobRequest::V1(request))
}

/// The options a v2 manifest takes: `exports` (required) and `checkpoints` (patterns).
fn validate_v2(svc: &Service, text: &str, opts: BuildOptions) -> Result<JobRequest> {
    let manifest = match manifest::load_document(text, &svc.index) {
        Ok(Document::V2(m)) => m,
        Ok(Document::V1(_)) => {
            return Err(Error::Failed("the manifest changed its format".into()));
        }
        Err(e) => return Err(Error::InvalidManifest(format!("invalid manifest:\n{e}"))),
    };
    let v1_only = [
        ("sources", opts.sources.is_some()),
        ("secrets", opts.secrets.is_some()),
        ("source-epoch", opts.source_epoch.is_some()),
    ];
    if let Some((name, _)) = v1_only.iter().find(|(_, given)| *given) {
        return Err(Error::InvalidOption(format!(
            "option '{name}' is for v1 manifests; a v2 manifest names its sources (and each pipeline's source-epoch) itself"
        )));
    }
    let names = || {
        let names: Vec<&str> = manifest.pipelines.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    };
    let exports = opts.exports.unwrap_or_default();
    if exports.is_empty() {
        return Err(Error::InvalidOption(format!(
            "a v2 manifest builds only the pipelines it exports: give option 'exports' (this manifest's pipelines: {})",
            names()
        )));
    }
    let unknown: Vec<&str> = exports
        .iter()
        .filter(|e| find_v2_pipeline(&manifest, e).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Error::UnknownExport(format!(
            "export '{}' is not a pipeline of this manifest (its pipelines: {})",
            unknown.join("', '"),
            names()
        )));
    }
    let patterns = opts.checkpoints.unwrap_or_default();
    let request = V2Request::new(manifest, exports, &patterns).map_err(|e| match e {
        V2RequestError::NoCheckpoint(p) => Error::UnknownCheckpoint(format!(
            "no pipeline name, stage id or stage type of this manifest matches the checkpoint patterns '{}'",
            p.join("', '")
        )),
        e @ V2RequestError::UnknownExport { .. } => Error::UnknownExport(e.to_string()),
    })?;
    check_v2_runners(&svc.index, &request)?;
    Ok(JobRequest::V2(request))
}
