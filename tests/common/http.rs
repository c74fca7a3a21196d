//! A small HTTP server on 127.0.0.1 for tests: fixed files (or redirects), one connection at a
//! time, every request recorded.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serves `files` (path -> body) on 127.0.0.1 until dropped; records request
/// paths and header lines.
pub struct Server {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start<P: Into<String>>(files: Vec<(P, Vec<u8>)>) -> Server {
        Server::start_paced(files, usize::MAX, Duration::ZERO)
    }

    /// Like [`Server::start`], but each body goes out `chunk` bytes at a time with `pause`
    /// between chunks (a download that takes a while, for progress reports).
    pub fn start_paced<P: Into<String>>(
        files: Vec<(P, Vec<u8>)>,
        chunk: usize,
        pause: Duration,
    ) -> Server {
        let files: Vec<(String, Vec<u8>)> = files.into_iter().map(|(p, b)| (p.into(), b)).collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                l.lock().unwrap().push(head.clone());
                let (status, body) = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => ("200 OK", body.clone()),
                    None => ("404 Not Found", b"no".to_vec()),
                };
                // A body "redirect:URL" answers 302 Found to URL.
                let (status, location, body) = match body.strip_prefix(b"redirect:") {
                    Some(to) => (
                        "302 Found",
                        String::from_utf8_lossy(to).into_owned(),
                        Vec::new(),
                    ),
                    None => (status, String::new(), body),
                };
                let location = if location.is_empty() {
                    String::new()
                } else {
                    format!("Location: {location}\r\n")
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                for part in body.chunks(chunk) {
                    if conn.write_all(part).is_err() || s.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(pause);
                }
            }
        });
        Server { port, log, stop }
    }

    /// Serves every file under `dir` at its path relative to `dir` (read now).
    pub fn serve_dir(dir: &Path) -> Server {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                    out.push((format!("/{rel}"), std::fs::read(&path).unwrap()));
                }
            }
        }
        let mut files = Vec::new();
        walk(dir, dir, &mut files);
        Server::start(files)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
