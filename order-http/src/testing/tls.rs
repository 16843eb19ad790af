//! A TLS server for tests of clients that must speak https: `openssl s_server` with a fresh
//! self-signed certificate for `localhost`, which no client trusts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// `openssl s_server` on a free port; stopped and its files removed when dropped.
#[derive(Debug)]
pub struct TlsServer {
    /// Its port on localhost.
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl TlsServer {
    /// Makes a certificate and starts the server (it may take a moment to listen).
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("tls-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(&dir)
            .output()
            .expect("openssl is installed");
        assert!(made.status.success(), "{made:?}");
        let port = super::free_port();
        let child = Command::new("openssl")
            .args([
                "s_server", "-quiet", "-www", "-cert", "cert.pem", "-key", "key.pem",
            ])
            .args(["-accept", &port.to_string()])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        Self { port, child, dir }
    }

    /// Its https URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
