//! Typed identifiers: the ids osbuild derives from a manifest and the content hashes of trees.
//!
//! Both are lowercase hex SHA-256 digests; the newtypes keep a stage id from being used
//! where a treesum is meant, and [`ObjectId::parse`] keeps arbitrary strings (from a
//! command line, a D-Bus caller or a directory listing) from ever being used as a path.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an id: expected 64 lowercase hexadecimal characters")]
pub struct InvalidId(pub String);

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `bytes` in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String cannot fail");
    }
    s
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Accepts exactly 64 lowercase hex characters.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if is_sha256_hex(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidId(s.to_owned()))
                }
            }

            /// Builds the id from a finished SHA-256 digest.
            pub fn from_digest(digest: &[u8]) -> Self {
                Self(hex(digest))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

hex_id!(
    /// The id of a stage, and so of the tree after it (tree id), or of an assembler's
    /// output (output id): a hash of the manifest, never of content.
    ObjectId
);

hex_id!(
    /// The v10 treesum: a hash of a tree's content and metadata, naming `objects/<treesum>`.
    Treesum
);

hex_id!(
    /// The name of a build root's kept set-up, `setups/<key>` (see `buildroot::setup`): a
    /// hash of what the set-up depends on.
    SetUpKey
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_sha256_hex() {
        let good = "beda46704765a47e6d4f44aff22168ae36866c9c0e6e11552b775b77776b2969";
        assert_eq!(ObjectId::parse(good).unwrap().as_str(), good);
        for bad in [
            "",
            "../etc",
            &good.to_uppercase(),
            &good[1..],
            &format!("{good}0"),
        ] {
            assert!(ObjectId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn from_digest_is_lowercase_hex() {
        let id = Treesum::from_digest(&[0xab; 32]);
        assert_eq!(id.as_str(), "ab".repeat(32));
    }
}
