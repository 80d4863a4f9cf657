//! Shared helpers: run the binary, find the shared data set, write files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built `keywatch` binary.
pub fn keywatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keywatch"));
    cmd.env_remove("KEYWATCH_LOG").stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYWATCH__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("keywatch runs")
}

/// The ids of the findings a `keywatch replay` of `path` (default
/// settings) raises: the same events through Kafka must give no others.
pub fn replay_ids(path: &Path) -> std::collections::BTreeSet<String> {
    let o = run(keywatch().arg("replay").arg(path));
    assert!(o.status.success(), "{}", stderr(&o));
    json_lines(&stdout(&o))
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `../shared/data/NAME` beside the checkout. Under `CI=true` a missing
/// folder fails the test; otherwise the test says it is skipped (a user's
/// clone has no `../shared`).
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing under CI=true", dir.display());
    }
    eprintln!(
        "skipped: {} not found (it sits beside the checkout in CI)",
        dir.display()
    );
    None
}

/// Parses JSON Lines output.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The first of `names` that runs (`NAME --version` succeeds): one external
/// tool known by several names (Debian calls Alertmanager
/// `prometheus-alertmanager`). When none runs, the test should return: it
/// says it is skipped, or fails under `CI=true` (`.ci/test` installs them).
pub fn external_tool(names: &[&str]) -> Option<String> {
    let found = names.iter().find(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        let what = names.join(" or ");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is missing under CI=true (.ci/test installs it)");
        }
        eprintln!("skipped: {what} is not installed (.ci/test installs it)");
    }
    found.map(|name| (*name).to_owned())
}

/// A loopback address with a port free right now, for a server the test
/// starts (`127.0.0.1:PORT`).
pub fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound address").to_string()
}

/// Sends SIGTERM to a child and waits for it to exit.
pub fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().expect("the child exits")
}

/// The offsets `group` has committed on partitions `0..partitions` of
/// `topic`, summed (a partition with no commit counts 0): what a member
/// joining the group now would start after.
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("a probe consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    probe
        .committed_offsets(tpl, std::time::Duration::from_secs(10))
        .expect("the group's committed offsets")
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum()
}

/// Whether `probe` succeeds (an external tool runs, a mount works): when
/// not, says the test is skipped, or fails under `CI=true` (where `.ci/test`
/// installs every tool and runs as root).
pub fn available(what: &str, probe: &mut Command) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is missing under CI=true (.ci/test installs it and runs as root)");
        }
        eprintln!("skipped: {what} is not available here (.ci/test installs it)");
    }
    ok
}

/// A small tmpfs mounted for one test: a filesystem that really fills up.
/// Mounting needs root; without it the test should return (it says it is
/// skipped, or fails under `CI=true`, where `.ci/run` runs as root).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size` (as `mount -o size=`, e.g. `2m`).
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        available(
            "a tmpfs (mounting one needs root)",
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path()),
        )
        .then(|| Tmpfs { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem is full; removing it frees the room.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("the filler file");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).and_then(|_| f.flush()).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A minimal HTTP/1.0 GET on loopback.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_owned()))
}

/// The last `n` lines of `text`: where a daemon's log says why it stopped.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child process (a `keywatch run`, an emulator) killed and reaped when
/// dropped, however the test ends; derefs to the [`std::process::Child`].
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}
