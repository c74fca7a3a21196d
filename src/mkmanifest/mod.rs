//! Manifest generators: the libraries behind `osbuild-mkmanifest-debian` and
//! `osbuild-mkmanifest-dnf`, which turn a package request into a manifest with every
//! download pinned (by file checksum for Debian and for dnf's v2 manifests, by repository
//! metadata checksum for dnf's v1 manifests).
//! They sit above the engine: nothing in the engine depends on them.
//!
//! - [`debian`]: resolving Debian packages with apt into a manifest for `org.osbuild.dpkg`;
//! - [`debian_v2`]: the same as a v2 manifest (pipelines os, image and the conversion);
//! - [`dnf`]: pinning rpm repositories into a manifest for `org.osbuild.dnf`;
//! - [`depsolve`]: resolving rpms before the build with `osbuild-depsolve-dnf` into a v2
//!   manifest for `org.osbuild.rpm` and `org.osbuild.curl`.

pub mod debian;
pub mod debian_v2;
pub mod depsolve;
pub mod dnf;
