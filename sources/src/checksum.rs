//! Checksums as sources name files: `ALGORITHM:HEX` (md5, sha1, sha256, sha384, sha512), and
//! a streaming hasher for each algorithm.

use std::fmt;

use sha2::Digest;

/// The algorithms osbuild v10 accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "md5" => Self::Md5,
            "sha1" => Self::Sha1,
            "sha256" => Self::Sha256,
            "sha384" => Self::Sha384,
            "sha512" => Self::Sha512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of the digest in hex digits.
    fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha1 => 40,
            Self::Sha256 => 64,
            Self::Sha384 => 96,
            Self::Sha512 => 128,
        }
    }
}

/// Why a string is not a checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("{0}: not a checksum (expected ALGORITHM:HEX, e.g. sha256:...)")]
    Syntax(String),
    #[error("{checksum}: unsupported checksum algorithm {algorithm:?} (supported: md5, sha1, sha256, sha384, sha512)")]
    Algorithm { checksum: String, algorithm: String },
    #[error("{checksum}: a {algorithm} digest is {expected} lowercase hex digits")]
    Digest {
        checksum: String,
        algorithm: &'static str,
        expected: usize,
    },
}

/// A parsed `ALGORITHM:HEX` checksum. Its text is also the file's name in the cache, so the
/// digest must be lowercase hex (no `/`, no `..`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum {
    text: String,
    algorithm: Algorithm,
}

impl Checksum {
    pub fn parse(text: &str) -> Result<Self, ChecksumError> {
        let (algo, hex) = text
            .split_once(':')
            .ok_or_else(|| ChecksumError::Syntax(text.to_owned()))?;
        let algorithm = Algorithm::parse(algo).ok_or_else(|| ChecksumError::Algorithm {
            checksum: text.to_owned(),
            algorithm: algo.to_owned(),
        })?;
        let hex_ok = hex.len() == algorithm.hex_len()
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex_ok {
            return Err(ChecksumError::Digest {
                checksum: text.to_owned(),
                algorithm: algorithm.name(),
                expected: algorithm.hex_len(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            algorithm,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A fresh hasher for this checksum's algorithm.
    pub fn hasher(&self) -> Hasher {
        Hasher::new(self.algorithm)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Streaming digest of one algorithm.
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Md5 => Self::Md5(md5::Md5::new()),
            Algorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => Self::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// `ALGORITHM:HEX` of everything fed so far.
    pub fn finish(self) -> String {
        let (name, bytes) = match self {
            Self::Md5(h) => ("md5", h.finalize().to_vec()),
            Self::Sha1(h) => ("sha1", h.finalize().to_vec()),
            Self::Sha256(h) => ("sha256", h.finalize().to_vec()),
            Self::Sha384(h) => ("sha384", h.finalize().to_vec()),
            Self::Sha512(h) => ("sha512", h.finalize().to_vec()),
        };
        let mut s = String::with_capacity(name.len() + 1 + 2 * bytes.len());
        s.push_str(name);
        s.push(':');
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// Hashes a whole file (to re-verify a cache entry).
pub fn hash_file(path: &std::path::Path, algorithm: Algorithm) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Hasher::new(algorithm);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_abc() {
        // Published test vectors for "abc".
        let cases = [
            (Algorithm::Md5, "md5:900150983cd24fb0d6963f7d28e17f72"),
            (Algorithm::Sha1, "sha1:a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Algorithm::Sha256,
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (Algorithm::Sha384, "sha384:cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            (Algorithm::Sha512, "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
        ];
        for (algo, want) in cases {
            let mut h = Hasher::new(algo);
            h.update(b"a");
            h.update(b"bc");
            assert_eq!(h.finish(), want);
            assert_eq!(Checksum::parse(want).unwrap().algorithm(), algo);
        }
    }

    #[test]
    fn bad_checksums_say_why() {
        let cases = [
            ("nocolon", "not a checksum"),
            ("crc32:abcd", "unsupported checksum algorithm \"crc32\""),
            ("sha256:abc", "64 lowercase hex digits"),
            (
                "md5:../../../../../../../../etc/passwd",
                "32 lowercase hex digits",
            ),
            (
                "md5:900150983CD24FB0D6963F7D28E17F72",
                "32 lowercase hex digits",
            ),
        ];
        for (text, want) in cases {
            let err = Checksum::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.starts_with(text), "{text}: names the checksum: {err}");
        }
    }
}
