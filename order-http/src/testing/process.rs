//! The `order-http` binary run as an operator runs it: its own process, a clean
//! environment, its standard output kept.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running `order-http` process.
#[derive(Debug)]
pub struct Process {
    child: Child,
    lines: JoinHandle<Vec<String>>,
    /// Its base URL.
    pub base: String,
}

impl Process {
    /// Starts the binary at `path` (`env!("CARGO_BIN_EXE_order-http")`) on a free local
    /// port with only `env` set besides `HOST`, `PORT` and `AUTH_MODE=none` (which `env` may
    /// override; an empty value is the default), and waits (10 s at most) until it
    /// answers `/health`.
    pub async fn start(path: &str, env: &[(&str, &str)]) -> Self {
        let port = super::free_port();
        let mut child = Command::new(path)
            .env_clear()
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("AUTH_MODE", "none")
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.get(format!("{base}/health")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the binary did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, lines, base }
    }

    /// Sends SIGTERM, waits for the process to exit, and gives its exit status and every
    /// line it wrote to standard output.
    pub async fn stop(self) -> (ExitStatus, Vec<String>) {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(signalled.success(), "SIGTERM was delivered");
        let mut child = self.child;
        let exit = tokio::task::spawn_blocking(move || child.wait().expect("the process ends"))
            .await
            .expect("waiting does not panic");
        let lines = self.lines.join().expect("the reader ends with the process");
        (exit, lines)
    }
}
