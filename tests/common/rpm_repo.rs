//! An rpm repository for tests: signed packages built with rpmbuild, indexed with
//! createrepo_c, and an HTTPS server (python3) that wants client certificates.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::rpms::{self, have, Signer};
use super::{output as run, privileged};

/// Whether this machine can run these tests (CI installs everything).
pub fn tools_present(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let missing: Vec<&str> = ["dnf", "createrepo_c", "rpmbuild", "rpmsign", "gpg"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!("skipping {test}: missing {missing:?} (apt: dnf createrepo-c rpm gnupg)");
    false
}

/// A repository of signed packages: `osbuild-app` requires `osbuild-lib` (which requires
/// `osbuild-base`) and recommends `osbuild-weak`; `osbuild-other` is unrelated.
/// `osbuild-base` has a `%post` scriptlet (Lua, so the tree needs no shell) that records what
/// scriptlets see in `/osbuild-probe`: `/proc/self/net/dev`, the names in `/sys/class/net`
/// and `/etc/machine-id`.
pub struct Repo {
    pub dir: PathBuf,
    pub signer: Signer,
}

const PROBE: &str = r#"%post -p <lua>
local function slurp(path)
  local f = io.open(path)
  if not f then return "(none)\n" end
  local text = f:read("a")
  f:close()
  return text
end
local names = {}
for _, n in ipairs(posix.dir("/sys/class/net") or {}) do
  if n ~= "." and n ~= ".." then table.insert(names, n) end
end
table.sort(names)
local out = io.open("/osbuild-probe", "w")
out:write("net/dev:\n", slurp("/proc/self/net/dev"))
out:write("sys/class/net: ", table.concat(names, " "), "\n")
out:write("machine-id: ", slurp("/etc/machine-id"))
out:close()
"#;

pub const CLOSURE: [&str; 3] = [
    "osbuild-app-1.0-1.noarch",
    "osbuild-base-1.0-1.noarch",
    "osbuild-lib-1.0-1.noarch",
];

impl Repo {
    pub fn create(work: &Path) -> Repo {
        let signer = Signer::new(work);
        let dir = work.join("repo");
        std::fs::create_dir(&dir).unwrap();
        for (name, headers) in [
            (
                "osbuild-app",
                "Requires: osbuild-lib\nRecommends: osbuild-weak",
            ),
            ("osbuild-lib", "Requires: osbuild-base"),
            ("osbuild-base", ""),
            ("osbuild-weak", ""),
            ("osbuild-other", ""),
        ] {
            let sections = if name == "osbuild-base" { PROBE } else { "" };
            let rpm = rpms::build(work, name, headers, sections, Some(&signer));
            std::fs::copy(&rpm, dir.join(rpm.file_name().unwrap())).unwrap();
        }
        run(Command::new("createrepo_c").arg("--quiet").arg(&dir));
        Repo { dir, signer }
    }

    /// `sha256:<hex>` of repodata/repomd.xml, as a manifest pins it.
    pub fn checksum(&self) -> String {
        rpms::sha256_file(&self.dir.join("repodata/repomd.xml"))
    }
}

/// An HTTPS server (python3) for `root` that only talks to clients with a certificate
/// signed by `ca`; killed on drop.
pub struct TlsServer {
    child: Child,
    pub port: u16,
}

const TLS_SERVER: &str = r#"
import functools, http.server, ssl, sys
ca, cert, key, root = sys.argv[1:5]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

impl TlsServer {
    pub fn start(pki: &Pki, root: &Path) -> TlsServer {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(TLS_SERVER)
            .arg(pki.dir.join("ca.crt"))
            .arg(pki.dir.join("server.crt"))
            .arg(pki.dir.join("server.key"))
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        TlsServer { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn create(dir: PathBuf) -> Pki {
        std::fs::create_dir(&dir).unwrap();
        let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(&dir).args(args));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=osbuild test CA",
            "-days",
            "2",
        ]);
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        for (name, ext) in [("server", Some("server.ext")), ("client", None)] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN=osbuild test {name}"),
            ]);
            let mut sign = vec![
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
            ];
            if let Some(ext) = ext {
                sign.extend(["-extfile", ext]);
            }
            openssl(&sign);
        }
        Pki { dir }
    }

    pub fn pem(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }
}
