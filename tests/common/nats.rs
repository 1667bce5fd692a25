//! A NATS cluster for the cluster tests: three `nats-server` processes with
//! JetStream, joined by routes, on loopback ports. The binary comes from
//! `scripts/nats-server` (a pinned package; `STOMPEDE_NATS_SERVER` names it when
//! the test command has installed it already).

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary, installed by the project's own script if needed.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("STOMPEDE_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/nats-server");
    let out = Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/nats-server runs");
    assert!(out.status.success(), "scripts/nats-server failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `nats-server` of a [`NatsCluster`].
pub struct NatsNode {
    child: Child,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Its name in the cluster.
    pub name: String,
}

impl NatsNode {
    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.client_addr)
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `nats-server` with JetStream on its own (storing in `store`), once it
/// takes clients (at most 10 s).
pub fn one(store: &std::path::Path) -> NatsNode {
    one_on(store, free_port())
}

/// [`one`] on client port `port` (to start a server again where it was).
pub fn one_on(store: &std::path::Path, port: u16) -> NatsNode {
    let child = Command::new(nats_server_binary())
        .args(["--addr", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--jetstream", "--store_dir"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let node = NatsNode {
        child,
        client_addr: SocketAddr::from(([127, 0, 0, 1], port)),
        name: "single".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(node.client_addr).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

/// Three `nats-server`s with JetStream, routed into one cluster; each stores in a
/// temporary directory removed with the cluster.
pub struct NatsCluster {
    /// The servers, in start order.
    pub nodes: Vec<NatsNode>,
    _store: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts three servers and waits (at most 30 s) until each takes clients.
    /// A port picked free can be taken by another test before the server binds
    /// it; a server that exits is started again, with the others, on new ports
    /// (three attempts).
    pub fn start() -> NatsCluster {
        for _ in 0..2 {
            if let Some(cluster) = Self::try_start() {
                return cluster;
            }
        }
        Self::try_start().expect("three nats-server did not start (three attempts)")
    }

    fn try_start() -> Option<NatsCluster> {
        let binary = nats_server_binary();
        let store = tempfile::tempdir().expect("temporary directory");
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_urls = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..3)
            .map(|i| {
                let name = format!("n{i}");
                let child = Command::new(&binary)
                    .args(["--addr", "127.0.0.1", "--port"])
                    .arg(clients[i].to_string())
                    .args(["--server_name", &name, "--jetstream", "--store_dir"])
                    .arg(store.path().join(&name))
                    .args(["--cluster_name", "stompede-test", "--cluster"])
                    .arg(format!("nats://127.0.0.1:{}", routes[i]))
                    .args(["--routes", &route_urls])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nats-server starts");
                NatsNode {
                    child,
                    client_addr: SocketAddr::from(([127, 0, 0, 1], clients[i])),
                    name,
                }
            })
            .collect::<Vec<_>>();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut nodes = nodes;
        for node in &mut nodes {
            while std::net::TcpStream::connect(node.client_addr).is_err() {
                assert!(Instant::now() < deadline, "{} did not start", node.name);
                if node.child.try_wait().ok().flatten().is_some() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(NatsCluster {
            nodes,
            _store: store,
        })
    }
}
