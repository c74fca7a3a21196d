//! A tiny HTTP/1.1 server on 127.0.0.1 for the source tests, failing on demand, and a helper
//! that runs the source binary the way the engine does.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the server answers one path. `n` is the request's number for that path, from 1.
pub type Handler = Box<dyn Fn(usize, &mut TcpStream) + Send + Sync>;

#[derive(Default)]
struct State {
    handlers: Mutex<HashMap<String, Arc<Handler>>>,
    hits: Mutex<HashMap<String, usize>>,
    headers: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Serves until dropped, and at most 120 s.
pub struct Server {
    pub port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !sp.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || serve(conn, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn route(&self, path: &str, h: impl Fn(usize, &mut TcpStream) + Send + Sync + 'static) {
        self.state
            .handlers
            .lock()
            .unwrap()
            .insert(path.to_owned(), Arc::new(Box::new(h)));
    }

    pub fn hits(&self, path: &str) -> usize {
        *self.state.hits.lock().unwrap().get(path).unwrap_or(&0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    /// Every request header line received (lowercase names).
    pub fn headers(&self) -> Vec<String> {
        self.state.headers.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut conn: TcpStream, st: &State) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    st.headers
        .lock()
        .unwrap()
        .extend(lines.filter(|l| !l.is_empty()).map(|l| {
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            format!("{}:{}", k.to_ascii_lowercase(), v)
        }));
    let n = {
        let mut hits = st.hits.lock().unwrap();
        let e = hits.entry(path.clone()).or_default();
        *e += 1;
        *e
    };
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let handler = st.handlers.lock().unwrap().get(&path).cloned();
    match handler {
        Some(h) => h(n, &mut conn),
        None => respond(&mut conn, 404, b"not found"),
    }
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
}

/// A complete response.
pub fn respond(conn: &mut TcpStream, status: u16, body: &[u8]) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        403 => "Forbidden",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
}

/// Announces the whole body but sends only half of it, then closes.
pub fn respond_truncated(conn: &mut TcpStream, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body[..body.len() / 2]);
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Some deterministic content of `len` bytes.
pub fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// What the source replied.
pub struct Reply {
    pub json: serde_json::Value,
    pub status: i32,
    pub stderr: String,
    pub stdout: String,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// Runs `LIBDIR/sources/<name>`-style: the binary called by the source's name.
pub fn run_source(name: &str, request: &serde_json::Value, env: &[(&str, &str)]) -> Reply {
    let mut child = Command::new(env!("CARGO_BIN_EXE_osbuild-sources"))
        .arg0(name)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Reply {
        json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        status: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout,
    }
}

/// The names in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs `source` on `request` with secret header `Authorization: token` (the request must
/// fail: it names a missing file); the server got the header, and the source's output holds
/// no trace of it (`needle` is a part of the token).
pub fn assert_header_secret_kept(
    server: &Server,
    source: &str,
    request: &mut serde_json::Value,
    token: &str,
    needle: &str,
) {
    request["secrets"] = serde_json::json!({"headers": {"Authorization": token}});
    let reply = run_source(source, request, &[("OSBUILD_SOURCE_PROGRESS", "1")]);
    assert_eq!(reply.status, 1);
    assert!(server
        .headers()
        .contains(&format!("authorization: {token}")));
    assert!(!reply.stdout.contains(needle) && !reply.stderr.contains(needle));
}

/// A server that completes connections (the kernel's backlog) and never answers, until
/// dropped.
pub fn never_answering(path: &str) -> (std::net::TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    (listener, url)
}

/// `text` contains every one of `want`.
pub fn assert_contains_all(text: &str, want: &[String]) {
    for w in want {
        assert!(text.contains(w.as_str()), "missing {w:?} in {text}");
    }
}
