//! `org.osbuild.dnf`: repository configurations by metadata checksum, as osbuild v10.
//!
//! Nothing is downloaded: for each requested checksum the reply lists
//! `{"checksum", "baseurl"|"mirrorlist"|"metalink", "sslcacert"?, "gpgkey"?, "sslclientcert"?,
//! "sslclientkey"?}` from `options.repos` and `secrets.repos`. The values are PEM (or armored)
//! contents, which the dnf stage writes to private files for dnf; the client certificate and
//! key come from the secrets and are what the stage needs to reach the repository, so they
//! are part of the reply, as in v10.

use serde_json::{Map, Value};

use crate::Request;

pub fn run(request: &Request) -> Result<Value, String> {
    let empty = Map::new();
    let repos = request
        .options
        .get("repos")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let secrets = request
        .secrets
        .get("repos")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut reply = Vec::new();
    for checksum in &request.checksums {
        let repo = repos
            .get(checksum)
            .and_then(Value::as_object)
            .ok_or_else(|| format!("source unknown: {checksum}"))?;
        let mut out = Map::new();
        out.insert("checksum".into(), Value::String(checksum.clone()));
        let location = ["baseurl", "mirrorlist", "metalink"]
            .into_iter()
            .find_map(|k| repo.get(k).map(|v| (k, v)))
            .ok_or_else(|| {
                format!("repo {checksum} is missing baseurl, mirrorlist, or metalink key")
            })?;
        out.insert(location.0.into(), location.1.clone());
        for key in ["sslcacert", "gpgkey"] {
            if let Some(v) = repo.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        if let Some(s) = secrets.get(checksum).and_then(Value::as_object) {
            for key in ["sslclientcert", "sslclientkey"] {
                if let Some(v) = s.get(key) {
                    out.insert(key.into(), v.clone());
                }
            }
        }
        reply.push(Value::Object(out));
    }
    Ok(Value::Array(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(checksums: &[&str]) -> Request {
        let v: Value = serde_json::from_str(
            r#"{"options": {"repos": {
                    "sha256:aa": {"baseurl": "http://r/a", "gpgkey": "KEY", "mirrorlist": "ignored"},
                    "sha256:bb": {"metalink": "http://m", "sslcacert": "/ca.pem"},
                    "sha256:cc": {"gpgkey": "no location"}}},
                "secrets": {"repos": {"sha256:bb": {"sslclientcert": "/c.pem", "sslclientkey": "/k.pem"}}},
                "cache": "/c", "output": "/o"}"#,
        )
        .unwrap();
        let mut r = Request::parse(v.to_string().as_bytes()).unwrap();
        r.checksums = checksums.iter().map(|s| s.to_string()).collect();
        r
    }

    #[test]
    fn replies_one_repo_per_checksum_in_order() {
        let reply = run(&request(&["sha256:bb", "sha256:aa"])).unwrap();
        assert_eq!(
            reply.to_string(),
            r#"[{"checksum":"sha256:bb","metalink":"http://m","sslcacert":"/ca.pem","sslclientcert":"/c.pem","sslclientkey":"/k.pem"},{"checksum":"sha256:aa","baseurl":"http://r/a","gpgkey":"KEY"}]"#
        );
    }

    #[test]
    fn unknown_and_incomplete_repos_are_errors() {
        let cases = [
            ("sha256:zz", "source unknown: sha256:zz"),
            (
                "sha256:cc",
                "repo sha256:cc is missing baseurl, mirrorlist, or metalink key",
            ),
        ];
        for (c, want) in cases {
            assert_eq!(run(&request(&[c])).unwrap_err(), want);
        }
    }
}
