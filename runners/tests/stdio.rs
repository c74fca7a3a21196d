//! `setup-stdio` against a test server: the descriptors handed over end up on the targets.

mod common;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use osbuild_runners::stdio::{install_stdio, request_stdio};

fn devnull_fd() -> OwnedFd {
    File::open("/dev/null").unwrap().into()
}

#[test]
fn handover_dup2s_the_named_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("osbuild");
    let mut args = tempfile::tempfile().unwrap();
    args.write_all(b"{\"tree\": \"/run/osbuild/tree\"}")
        .unwrap();
    args.rewind().unwrap();
    let (mut out_r, out_w) = common::pipe();
    let (mut err_r, err_w) = common::pipe();
    // Shuffled indexes: the reply, not the order, says which is which.
    let server = common::serve_once(
        &sock,
        r#"{"stdin": 2, "stdout": 0, "stderr": 1}"#,
        common::owned(&[&out_w, &err_w, &args]),
    );
    let fds = request_stdio(&sock, Some(Duration::from_secs(10))).unwrap();
    let req = server.join().unwrap();
    drop((out_w, err_w, args));
    assert_eq!(req.payload, r#"{"method": "setup-stdio"}"#);
    assert!(
        req.addr_len > std::mem::size_of::<libc::sa_family_t>(),
        "the client must be autobound (SO_PASSCRED before connect) so the host can reply"
    );

    let [mut t_in, mut t_out, mut t_err] = [devnull_fd(), devnull_fd(), devnull_fd()];
    install_stdio(fds, [&mut t_in, &mut t_out, &mut t_err]).unwrap();
    let (mut t_in, mut t_out, mut t_err) = (File::from(t_in), File::from(t_out), File::from(t_err));
    let mut got = String::new();
    t_in.read_to_string(&mut got).unwrap();
    assert_eq!(got, "{\"tree\": \"/run/osbuild/tree\"}");
    t_out.write_all(b"to stdout").unwrap();
    t_err.write_all(b"to stderr").unwrap();
    drop((t_in, t_out, t_err));

    // EOF on both pipes also proves no received copy was left open.
    let mut s = String::new();
    out_r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "to stdout");
    s.clear();
    err_r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "to stderr");
}

#[test]
fn bad_replies_are_named() {
    let cases = [
        ("not json", 3, "unexpected reply from the host: not JSON"),
        (r#"{"stdin": 0}"#, 3, r#"no integer "stdout""#),
        (
            r#"{"stdin": 0, "stdout": 1, "stderr": 5}"#,
            3,
            r#""stderr" is descriptor 5 but only 3 were passed"#,
        ),
        (
            r#"{"stdin": 0, "stdout": 0, "stderr": 0}"#,
            0,
            "but only 0 were passed",
        ),
    ];
    for (reply, nfds, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("osbuild");
        let null = File::open("/dev/null").unwrap();
        let server = common::serve_once(&sock, reply, common::owned(&vec![&null; nfds]));
        let err = request_stdio(&sock, Some(Duration::from_secs(10))).unwrap_err();
        server.join().unwrap();
        assert!(err.to_string().contains(want), "{reply}: {err}");
    }
}

#[test]
fn silent_host_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("osbuild");
    let _server = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    let err = request_stdio(&sock, Some(Duration::from_millis(200))).unwrap_err();
    assert!(err.to_string().contains("no reply from the host"), "{err}");
}
