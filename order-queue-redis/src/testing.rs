//! Test support: the Redis tests use, private Redis servers a test can kill and restart
//! empty without disturbing other tests, and a private Redis Cluster of three masters.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Redis tests use: `TEST_REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A `redis-server` of the test's own, keeping nothing on disk; killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` (a restart on the same port comes back empty). Panics,
    /// saying so, if `redis-server` cannot be run: a test needing it must not pass without it.
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[], None)
    }

    /// Starts a server that speaks only TLS, with `cert` and `key` (PEM files), on a free
    /// port: reach it at [`tls_url`](Self::tls_url).
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        let port = free_port();
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        Self::start_with(
            0,
            &[
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-auth-clients",
                "no",
            ],
            None,
        )
    }

    /// Its URL over TLS, for a server made with [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }

    /// Starts a server on `port` with extra arguments, in `dir` if given.
    fn start_with(port: u16, extra: &[&str], dir: Option<&Path>) -> Self {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}); install Redis to run this test")
        });
        // With the plain port off (0), the server listens on its TLS port only.
        let port = if port == 0 {
            extra
                .iter()
                .position(|a| *a == "--tls-port")
                .and_then(|i| extra.get(i + 1))
                .and_then(|p| p.parse().ok())
                .expect("a server without a plain port has a TLS port")
        } else {
            port
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL): everything it held is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters (no replicas) on free local ports, each keeping only its
/// `nodes.conf` in a temporary directory, so a killed master restarted on its port rejoins
/// the cluster (empty). Killed on drop.
#[derive(Debug)]
pub struct PrivateCluster {
    nodes: Vec<Option<PrivateRedis>>,
    ports: Vec<u16>,
    dirs: Vec<PathBuf>,
}

impl PrivateCluster {
    /// Starts three masters, joins them with `redis-cli --cluster create` and waits until
    /// the cluster serves every slot. Panics, saying why, if that fails.
    pub fn start() -> Self {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let base = std::env::temp_dir().join(format!(
            "order-queue-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        let dirs: Vec<PathBuf> = ports.iter().map(|p| base.join(p.to_string())).collect();
        for dir in &dirs {
            std::fs::create_dir_all(dir).expect("a directory for a cluster node");
        }
        let mut cluster = Self {
            nodes: ports.iter().map(|_| None).collect(),
            ports,
            dirs,
        };
        for i in 0..3 {
            cluster.start_node(i);
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}); install Redis to run this test")
            });
        assert!(
            status.success(),
            "redis-cli --cluster create failed: {status}"
        );
        cluster.wait_until_ok(Duration::from_secs(20));
        cluster
    }

    fn start_node(&mut self, i: usize) {
        self.nodes[i] = Some(PrivateRedis::start_with(
            self.ports[i],
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
            ],
            Some(&self.dirs[i]),
        ));
    }

    /// The seed URLs of every node, comma-separated (what `REDIS_URL` takes in cluster mode).
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ports of the nodes.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The port of the master serving `key`'s hash slot.
    pub fn port_of(&self, key: &str) -> u16 {
        let slot = self.cli(0, &["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = slot.trim().parse().expect("a slot number");
        let nodes = self.cli(0, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let address = fields[1].split('@').next().unwrap_or_default();
                return address
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("a node address");
            }
        }
        panic!("no master serves slot {slot} of {key}");
    }

    /// Kills (SIGKILL) the node on `port`: its data is gone.
    pub fn kill(&mut self, port: u16) {
        let i = self.index(port);
        self.nodes[i] = None;
    }

    /// Restarts the node on `port` (empty, with its old identity) and waits until the
    /// cluster serves every slot again.
    pub fn restart(&mut self, port: u16) {
        let i = self.index(port);
        self.start_node(i);
        self.wait_until_ok(Duration::from_secs(30));
    }

    /// Whether every node says the cluster is `ok`.
    pub fn is_ok(&self) -> bool {
        (0..self.ports.len())
            .filter(|&i| self.nodes[i].is_some())
            .all(|i| {
                self.cli(i, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            })
    }

    fn wait_until_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the cluster on ports {:?} did not reach cluster_state:ok",
                self.ports
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn index(&self, port: u16) -> usize {
        self.ports
            .iter()
            .position(|&p| p == port)
            .expect("a node of this cluster")
    }

    fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.ports[i].to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e})"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        if let Some(base) = self.dirs.first().and_then(|d| d.parent()) {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}
