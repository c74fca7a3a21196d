//! Where the engine puts things inside the sandbox, as modules see them.

/// Expands to the API socket directory, for `concat!`.
macro_rules! api_dir {
    () => {
        "/run/osbuild/api"
    };
}

/// A socket's name in [`API_DIR`] and its full path, from one literal.
macro_rules! api_socket {
    ($name:ident, $path:ident, $lit:literal, $what:literal) => {
        #[doc = concat!("The name in [`API_DIR`] of ", $what, ".")]
        pub const $name: &str = $lit;
        #[doc = concat!("The path of ", $what, ".")]
        pub const $path: &str = concat!(api_dir!(), "/", $lit);
    };
}

/// The modules of the libdir (stages, assemblers, runners), read-only.
pub const LIB_DIR: &str = "/run/osbuild/lib";
/// The tree a stage works on.
pub const TREE_DIR: &str = "/run/osbuild/tree";
/// Where an assembler writes its output.
pub const OUTPUT_DIR: &str = "/run/osbuild/output";
/// Where the sources API puts the files a stage asked for (`<dir>/<source>/<checksum>`).
pub const SOURCES_DIR: &str = "/run/osbuild/sources";
/// osbuild HEAD's protocol: the file a module reads its arguments from
/// (`{"tree", "paths", "devices", "inputs", "mounts", "options", "meta"}`).
pub const ARGUMENTS_FILE: &str = concat!(api_dir!(), "/arguments");
/// The name of [`ARGUMENTS_FILE`] in [`API_DIR`].
pub const ARGUMENTS_NAME: &str = "arguments";
/// HEAD's protocol: where a stage's inputs appear, read-only, one directory per input name.
pub const INPUTS_DIR: &str = "/run/osbuild/inputs";
/// HEAD's protocol: where a stage's mounts appear.
pub const MOUNTS_DIR: &str = "/run/osbuild/mounts";
/// HEAD's protocol: the file a module writes its metadata to (JSON).
pub const META_FILE: &str = "/run/osbuild/meta";
/// The directory of the API sockets.
pub const API_DIR: &str = api_dir!();

api_socket!(
    OSBUILD_SOCKET,
    OSBUILD_API,
    "osbuild",
    "the socket a runner asks for its stdio on"
);
api_socket!(
    SOURCES_SOCKET,
    SOURCES_API,
    "sources",
    "the socket a stage asks the sources on"
);
api_socket!(
    REMOTELOOP_SOCKET,
    REMOTELOOP_API,
    "remoteloop",
    "the socket an assembler asks for loop devices on"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_v10s() {
        assert_eq!(OSBUILD_API, "/run/osbuild/api/osbuild");
        assert_eq!(SOURCES_API, "/run/osbuild/api/sources");
        assert_eq!(REMOTELOOP_API, "/run/osbuild/api/remoteloop");
    }
}
