//! Manifest generators: the libraries behind `osbuild-mkmanifest-debian` and
//! `osbuild-mkmanifest-dnf`, which turn a package request into a v1 manifest with every
//! download pinned (by file checksum for Debian, by repository metadata checksum for dnf).
//! They sit above the engine: nothing in the engine depends on them.
//!
//! - [`debian`]: resolving Debian packages with apt into a manifest for `org.osbuild.dpkg`;
//! - [`debian_v2`]: the same as a v2 manifest (pipelines os, image and the conversion);
//! - [`dnf`]: pinning rpm repositories into a manifest for `org.osbuild.dnf`.

pub mod debian;
pub mod debian_v2;
pub mod dnf;
