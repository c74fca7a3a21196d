//! osbuildd on a private system-type bus with the real polkitd, throwaway users, the policy and
//! bus configuration of this checkout, and `osbuildctl`: the fixture of every service test.
//!
//! The fixture changes system directories (/usr/share/polkit-1/actions, /etc/polkit-1/rules.d,
//! /etc/passwd), so it serializes its users across threads and processes ([`Serial`]); every
//! change there is undone by a guard, even when a test fails.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use super::wait_within;
use super::Env;

static SERIAL: Mutex<()> = Mutex::new(());

/// Held for a whole test: one test of this process at a time (the mutex), and one process of
/// the machine at a time (the lock file), since two checkouts' test runs would share /etc/passwd
/// and polkit's rules.d.
pub struct Serial {
    _file: std::fs::File,
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl Serial {
    pub fn take() -> Serial {
        let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(MACHINE_LOCK)
            .unwrap();
        file.lock().unwrap();
        Serial {
            _file: file,
            _guard: guard,
        }
    }
}

/// The machine-wide lock of the tests that change system files (flock(2): released when the
/// process dies, however it dies).
pub const MACHINE_LOCK: &str = "/run/osbuild-privileged-tests.lock";

pub const BUILDER: &str = "osbtest-builder";
pub const OUTSIDER: &str = "osbtest-outsider";
pub const GROUP: &str = "osbtest-group";
pub const POLICY_DEST: &str = "/usr/share/polkit-1/actions/org.osbuild.builder1.policy";
pub const RULES_DEST: &str = "/etc/polkit-1/rules.d/50-osbtest.rules";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

/// Removes a file this test installed, restoring what was there before.
pub struct Installed {
    dest: PathBuf,
    saved: Option<Vec<u8>>,
}

impl Installed {
    pub fn new(dest: &str, content: &[u8]) -> Installed {
        let dest = PathBuf::from(dest);
        let saved = std::fs::read(&dest).ok();
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, content).unwrap();
        Installed { dest, saved }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        match &self.saved {
            Some(old) => {
                let _ = std::fs::write(&self.dest, old);
            }
            None => {
                let _ = std::fs::remove_file(&self.dest);
            }
        }
    }
}

/// Throwaway users and group, removed on drop.
pub struct Users;

impl Users {
    pub fn new() -> Users {
        let u = Users;
        u.remove();
        assert!(run(Command::new("groupadd").arg(GROUP)).status.success());
        for (user, groups) in [(BUILDER, Some(GROUP)), (OUTSIDER, None)] {
            let mut c = Command::new("useradd");
            c.args(["-M", "-s", "/bin/sh"]);
            if let Some(g) = groups {
                c.args(["-G", g]);
            }
            let out = run(c.arg(user));
            assert!(out.status.success(), "{out:?}");
        }
        u
    }

    pub fn remove(&self) {
        for user in [BUILDER, OUTSIDER] {
            let _ = Command::new("userdel")
                .arg(user)
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("groupdel")
            .arg(GROUP)
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.remove();
    }
}

pub fn uid_of(user: &str) -> u32 {
    let out = run(Command::new("id").args(["-u", user]));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

pub fn gid_of(user: &str) -> u32 {
    let out = run(Command::new("id").args(["-g", user]));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bus, polkitd, policy, users and osbuildd.
pub struct Fixture {
    pub env: Env,
    pub address: String,
    pub daemon: Option<Proc>,
    _polkitd: Proc,
    _bus: Proc,
    _users: Users,
    _policy: Installed,
    _serial: Serial,
}

impl Fixture {
    pub fn new() -> Fixture {
        let mut f = Fixture::without_daemon(None);
        f.start_daemon(&[]);
        f
    }

    /// Bus, polkitd, policy and users, but no osbuildd: the bus starts it on the first call,
    /// through this checkout's activation file (dbus/org.osbuild.Builder1.service.in, with the
    /// test's store and libdir, and `daemon_args` for its `--idle-exit 60`), as dbus-daemon
    /// would on a machine where osbuildd is installed but not running.
    ///
    /// The bus is system-type and reads the file from a `<servicedir>` and starts osbuildd
    /// itself, as root: the system bus's `<servicehelper>` (dbus-daemon-launch-helper) cannot
    /// serve a private bus, since it reads only the machine's system.conf and its service
    /// directories and points the service at the machine's system bus socket.
    pub fn activatable(daemon_args: &str) -> Fixture {
        Fixture::without_daemon(Some(daemon_args))
    }

    fn without_daemon(daemon_args: Option<&str>) -> Fixture {
        let serial = Serial::take();
        let env = Env::new();
        let dir = env.dir.path().to_owned();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sysd = dir.join("system.d");
        std::fs::create_dir(&sysd).unwrap();
        std::fs::copy(
            repo().join("dbus/org.osbuild.Builder1.conf"),
            sysd.join("org.osbuild.Builder1.conf"),
        )
        .unwrap();
        let services = match daemon_args {
            Some(args) => {
                let services = dir.join("system-services");
                std::fs::create_dir(&services).unwrap();
                std::fs::write(
                    services.join("org.osbuild.Builder1.service"),
                    activation_file(&env, args),
                )
                .unwrap();
                format!("<servicedir>{}</servicedir>", services.display())
            }
            None => String::new(),
        };
        let socket = dir.join("system_bus_socket");
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <include>/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>
  <includedir>{}</includedir>
  {services}
</busconfig>
"#,
                socket.display(),
                sysd.display()
            ),
        )
        .unwrap();
        let policy = Installed::new(
            POLICY_DEST,
            &std::fs::read(repo().join("polkit/org.osbuild.builder1.policy")).unwrap(),
        );
        let users = Users::new();
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            // The bus's log, and an activated osbuildd's: its stderr is the bus's.
            .stderr(log_file(&dir.join("bus.log")))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let bus = Proc(bus);
        let address = format!("unix:path={}", socket.display());
        let polkitd = Proc(
            Command::new("/usr/lib/polkit-1/polkitd")
                .arg("--no-debug")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let f = Fixture {
            env,
            address,
            daemon: None,
            _polkitd: polkitd,
            _bus: bus,
            _users: users,
            _policy: policy,
            _serial: serial,
        };
        f.wait_for_name("org.freedesktop.PolicyKit1");
        f
    }

    pub fn start_daemon(&mut self, extra: &[&str]) {
        self.start_daemon_via(&[], extra);
    }

    /// Starts osbuildd through `wrapper` (a command that execs its arguments, such as
    /// `nsenter --mount=...`), so that it runs where the wrapper puts it.
    pub fn start_daemon_via(&mut self, wrapper: &[&str], extra: &[&str]) {
        let exe = env!("CARGO_BIN_EXE_osbuildd");
        let mut argv = wrapper.to_vec();
        argv.push(exe);
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .arg("--address")
            .arg(&self.address)
            .arg("--store")
            .arg(&self.env.store)
            .arg("--libdir")
            .arg(&self.env.libdir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file(&self.env.dir.path().join("osbuildd.log")))
            .spawn()
            .unwrap();
        self.daemon = Some(Proc(child));
        self.wait_for_name("org.osbuild.Builder1");
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().unwrap().0.id()
    }

    /// Whether `name` has an owner on the bus now.
    pub fn has_owner(&self, name: &str) -> bool {
        let out = run(Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(["call", "org.freedesktop.DBus", "/org/freedesktop/DBus"])
            .args(["org.freedesktop.DBus", "NameHasOwner", "s", name]));
        String::from_utf8_lossy(&out.stdout).trim() == "b true"
    }

    /// The pid of `name`'s owner, if it has one.
    pub fn owner_pid(&self, name: &str) -> Option<u32> {
        let out = run(Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(["call", "org.freedesktop.DBus", "/org/freedesktop/DBus"])
            .args([
                "org.freedesktop.DBus",
                "GetConnectionUnixProcessID",
                "s",
                name,
            ]));
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().strip_prefix("u ")?.parse().ok()
    }

    pub fn wait_for_name(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.has_owner(name) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{name} did not appear on the bus");
    }

    /// `osbuildctl --address A ARGS` as `user` (None: root).
    pub fn ctl(&self, user: Option<&str>, args: &[&str]) -> Output {
        self.ctl_command(user, args).output().unwrap()
    }

    /// The command line of [`Self::ctl`].
    pub fn ctl_command(&self, user: Option<&str>, args: &[&str]) -> Command {
        let exe = env!("CARGO_BIN_EXE_osbuildctl");
        let mut c = match user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", exe]);
                c
            }
            None => Command::new(exe),
        };
        c.arg("--address").arg(&self.address).args(args);
        c.current_dir("/");
        c
    }

    /// [`Self::ctl`] that must end within `limit`: killed and reported otherwise.
    pub fn ctl_within(&self, user: Option<&str>, args: &[&str], limit: Duration) -> Output {
        let mut cmd = self.ctl_command(user, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        wait_within(child, limit, &format!("osbuildctl {}", args.join(" ")))
    }

    /// Writes a manifest where every user can read it.
    pub fn manifest(&self, name: &str, m: &Value) -> String {
        let p = self.env.dir.path().join(name);
        std::fs::write(&p, m.to_string()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p.to_string_lossy().into_owned()
    }

    pub async fn conn(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
            .unwrap()
    }

    pub fn store_names(&self, sub: &str) -> Vec<String> {
        self.env.store_entries(sub)
    }

    pub fn grant_group(&self) -> Installed {
        let text = std::fs::read_to_string(repo().join("polkit/50-osbuild.rules.example"))
            .unwrap()
            .replace("\"osbuild\"", &format!("\"{GROUP}\""));
        Installed::new(RULES_DEST, text.as_bytes())
    }
}

/// The outsider watching everything the daemon sends that it may receive (a match rule on
/// the daemon's name, as `gdbus monitor` adds it).
pub fn watch_as_outsider(f: &Fixture) -> Proc {
    let monitor = Proc(
        Command::new("gdbus")
            .uid(uid_of(OUTSIDER))
            .gid(gid_of(OUTSIDER))
            .args(["monitor", "--address"])
            .arg(&f.address)
            .args(["--dest", "org.osbuild.Builder1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    monitor
}

/// Everything a monitor printed, once it is stopped.
pub fn monitor_output(mut monitor: Proc) -> String {
    let _ = monitor.0.kill();
    let mut seen = String::new();
    monitor
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    seen
}

/// Waits (30 s at most) until `job`'s State is `want`.
pub fn wait_state(f: &Fixture, job: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = run(Command::new("busctl")
            .arg(format!("--address={}", f.address))
            .args(["get-property", "org.osbuild.Builder1", job])
            .args(["org.osbuild.Builder1.Job", "State"]));
        let s = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if s == format!("s \"{want}\"") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} state {s}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_file(path: &Path) -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    )
}

/// This checkout's activation file with this test's osbuildd, libdir and store, and
/// `daemon_args` instead of its `--idle-exit 60`.
pub fn activation_file(env: &Env, daemon_args: &str) -> String {
    let template =
        std::fs::read_to_string(repo().join("dbus/org.osbuild.Builder1.service.in")).unwrap();
    let daemon = Path::new(env!("CARGO_BIN_EXE_osbuildd"));
    let mut text = template
        .replace("@BINDIR@", &daemon.parent().unwrap().to_string_lossy())
        .replace("@LIBDIR@", &env.libdir.to_string_lossy());
    for (installed, test) in [
        (
            "/var/lib/osbuild/store",
            env.store.to_string_lossy().into_owned(),
        ),
        ("--idle-exit 60", daemon_args.to_owned()),
    ] {
        assert!(text.contains(installed), "{installed} in {template}");
        text = text.replace(installed, &test);
    }
    text
}

/// Stops the osbuildd the bus started (it is the bus's child, not ours), and waits for it.
impl Drop for Fixture {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            return;
        }
        let Some(pid) = self.owner_pid("org.osbuild.Builder1") else {
            return;
        };
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if process_alive(pid) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Whether `pid` runs (a zombie has exited).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
