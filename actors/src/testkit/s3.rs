//! A real S3-compatible server for tests, on loopback: Ceph's RADOS Gateway (Debian's
//! `radosgw`) over a one-node Ceph cluster (`ceph-mon`, and one `ceph-osd` keeping
//! its objects in memory, `memstore`). No S3 emulator: the media backend meets the
//! same server (SigV4, multipart uploads, ranged GETs, restarts) that Ceph users run
//! in production.
//!
//! Everything lives in one temporary directory: `ceph.conf`, the keyrings, the
//! daemons' data, sockets and logs. All three daemons run in the foreground as our
//! children and are stopped on drop. Buckets are created with curl's SigV4 signing
//! (`curl --aws-sigv4`), as any S3 client would.

use super::{free_port, stop, wait_listening};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The region our requests are signed for (RGW takes any).
pub const REGION: &str = "us-east-1";

/// One-node Ceph with a RADOS Gateway (see the module docs).
#[derive(Debug)]
pub struct CephS3 {
    dir: PathBuf,
    rgw_port: u16,
    access_key: String,
    secret_key: String,
    mon: Mutex<Option<Child>>,
    osd: Mutex<Option<Child>>,
    rgw: Mutex<Option<Child>>,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS random source");
    hex::encode(b)
}

fn check(what: &str, out: Output) -> io::Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl CephS3 {
    /// Starts the cluster and its gateway, with one S3 user (about 15 s).
    pub fn start() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-ceph-{}-{}",
            std::process::id(),
            crate::clock::now_ms()
        ));
        for sub in ["mon", "osd", "rgw", "run", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let me = Self {
            rgw_port: free_port()?,
            access_key: format!("SB{}", random_hex(9).to_uppercase()),
            secret_key: random_hex(20),
            mon: Mutex::default(),
            osd: Mutex::default(),
            rgw: Mutex::default(),
            dir,
        };
        let up = me
            .write_config(free_port()?)
            .and_then(|()| me.start_mon())
            .and_then(|()| me.start_osd())
            .and_then(|()| me.start_gateway());
        if let Err(e) = up {
            return Err(io::Error::other(format!("{e}\n{}", me.log_tails())));
        }
        me.admin(
            "radosgw-admin",
            &[
                "user",
                "create",
                "--uid=switchboard",
                "--display-name=switchboard tests",
                &format!("--access-key={}", me.access_key),
                &format!("--secret-key={}", me.secret_key),
            ],
        )?;
        Ok(me)
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("ceph.conf")
    }

    fn write_config(&self, mon_port: u16) -> io::Result<()> {
        let d = self.dir.display();
        let fsid = uuid_v4();
        let conf = format!(
            r#"[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {d}/admin.keyring
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
pid file = {d}/run/$name.pid
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 1073741824
[mon.a]
mon data = {d}/mon
keyring = {d}/mon.keyring
[osd.0]
osd data = {d}/osd
keyring = {d}/osd/keyring
[client.rgw]
keyring = {d}/rgw/keyring
rgw data = {d}/rgw
rgw frontends = beast endpoint=127.0.0.1:{rgw}
"#,
            rgw = self.rgw_port,
        );
        std::fs::write(self.conf(), conf)?;
        let keyring = self.dir.join("admin.keyring");
        tool(
            "ceph-authtool",
            &[
                "--create-keyring",
                path(&keyring),
                "--gen-key",
                "-n",
                "mon.",
                "--cap",
                "mon",
                "allow *",
            ],
        )?;
        tool(
            "ceph-authtool",
            &[
                path(&keyring),
                "--gen-key",
                "-n",
                "client.admin",
                "--cap",
                "mon",
                "allow *",
                "--cap",
                "osd",
                "allow *",
                "--cap",
                "mgr",
                "allow *",
            ],
        )?;
        std::fs::copy(&keyring, self.dir.join("mon.keyring"))?;
        let monmap = self.dir.join("monmap");
        tool(
            "monmaptool",
            &[
                "--create",
                "--addv",
                "a",
                &format!("[v2:127.0.0.1:{mon_port}]"),
                "--fsid",
                &fsid,
                path(&monmap),
            ],
        )?;
        self.admin(
            "ceph-mon",
            &["--mkfs", "-i", "a", "--monmap", path(&monmap)],
        )?;
        Ok(())
    }

    /// Runs a Ceph tool against this cluster's config.
    fn admin(&self, program: &str, args: &[&str]) -> io::Result<String> {
        let conf = self.conf();
        let mut all = vec!["-c", path(&conf)];
        all.extend_from_slice(args);
        tool(program, &all)
    }

    fn daemon(&self, program: &str, args: &[&str]) -> io::Result<Child> {
        Command::new(program)
            .arg("-f")
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::other(format!(
                    "cannot start {program} (apt-get install ceph-mon ceph-osd radosgw): {e}"
                ))
            })
    }

    fn start_mon(&self) -> io::Result<()> {
        let child = self.daemon("ceph-mon", &["-i", "a"])?;
        *lock(&self.mon) = Some(child);
        self.admin("ceph", &["--connect-timeout", "20", "-s"])
            .map(|_| ())
    }

    fn start_osd(&self) -> io::Result<()> {
        let uuid = uuid_v4();
        let id = self.admin("ceph", &["osd", "new", &uuid])?;
        let id = id.trim();
        let keyring = self.dir.join("osd/keyring");
        self.admin(
            "ceph",
            &[
                "auth",
                "get-or-create",
                &format!("osd.{id}"),
                "mon",
                "allow profile osd",
                "osd",
                "allow *",
                "mgr",
                "allow profile osd",
                "-o",
                path(&keyring),
            ],
        )?;
        self.admin("ceph-osd", &["-i", id, "--mkfs", "--osd-uuid", &uuid])?;
        let child = self.daemon("ceph-osd", &["-i", id])?;
        *lock(&self.osd) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stat = self.admin("ceph", &["osd", "stat"])?;
            if stat.contains("1 up") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("the OSD did not come up: {stat}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts the RADOS Gateway and waits until it answers S3 requests.
    pub fn start_gateway(&self) -> io::Result<()> {
        let keyring = self.dir.join("rgw/keyring");
        if !keyring.exists() {
            self.admin(
                "ceph",
                &[
                    "auth",
                    "get-or-create",
                    "client.rgw",
                    "mon",
                    "allow rw",
                    "osd",
                    "allow rwx",
                    "-o",
                    path(&keyring),
                ],
            )?;
        }
        let child = self.daemon("radosgw", &["-n", "client.rgw"])?;
        *lock(&self.rgw) = Some(child);
        // Its first start creates its pools before it listens.
        wait_listening(self.rgw_port, Duration::from_secs(90))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answered = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(self.endpoint())
                .output()?;
            if String::from_utf8_lossy(&answered.stdout) == "200" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("the RADOS Gateway does not answer"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the RADOS Gateway (SIGKILL: a crash); the cluster keeps the objects.
    pub fn kill_gateway(&self) {
        if let Some(mut c) = lock(&self.rgw).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.rgw_port)
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Creates bucket `name` (a signed `PUT /name`).
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        let code = self.signed(&["-X", "PUT"], &format!("/{name}"))?;
        if code == "200" {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "creating bucket {name} answered {code}"
            )))
        }
    }

    /// The keys of the objects in `bucket`.
    pub fn objects(&self, bucket: &str) -> io::Result<Vec<String>> {
        let out = self.admin(
            "radosgw-admin",
            &["bucket", "list", &format!("--bucket={bucket}")],
        )?;
        let entries: Vec<serde_json::Value> =
            serde_json::from_str(&out).map_err(io::Error::other)?;
        Ok(entries
            .iter()
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// The raw bytes of object `key` in `bucket` (what the server holds).
    pub fn object(&self, bucket: &str, key: &str) -> io::Result<Vec<u8>> {
        let out = Command::new("curl")
            .args(self.sigv4_args())
            .args(["-s", "-f"])
            .arg(format!("{}/{bucket}/{key}", self.endpoint()))
            .output()?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(io::Error::other(format!("GET {bucket}/{key} failed")))
        }
    }

    fn sigv4_args(&self) -> Vec<String> {
        vec![
            "--aws-sigv4".into(),
            format!("aws:amz:{REGION}:s3"),
            "--user".into(),
            format!("{}:{}", self.access_key, self.secret_key),
            // RGW checks the payload hash header SigV4 signs (curl 7.88 leaves it out).
            "-H".into(),
            "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .into(),
        ]
    }

    fn signed(&self, extra: &[&str], path_and_query: &str) -> io::Result<String> {
        let out = Command::new("curl")
            .args(self.sigv4_args())
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(extra)
            .arg(format!("{}{path_and_query}", self.endpoint()))
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The last lines each daemon logged (for a start that failed).
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for name in ["mon.a", "osd.0", "client.rgw"] {
            let log = std::fs::read_to_string(self.dir.join(format!("log/{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {name}.log\n"));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// What the gateway logged.
    pub fn gateway_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/client.rgw.log")).unwrap_or_default()
    }
}

/// Runs a Ceph tool that takes no config (`ceph-authtool`, `monmaptool`).
fn tool(program: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::other(format!(
                "cannot run {program} (apt-get install ceph-mon ceph-osd radosgw): {e}"
            ))
        })?;
    check(program, out)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// A random UUID in its text form (Ceph's fsid and OSD ids).
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Drop for CephS3 {
    fn drop(&mut self) {
        for slot in [&self.rgw, &self.osd, &self.mon] {
            if let Some(c) = lock(slot).take() {
                stop(c);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
