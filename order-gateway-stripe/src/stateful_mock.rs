//! A second Stripe to test against: npm's
//! [stripe-stateful-mock](https://www.npmjs.com/package/stripe-stateful-mock), started on a
//! free port. It has no PaymentIntents (only Charges, Refunds and Customers), so the
//! adapter's suite runs against localstripe ([`crate::testing`]); this one checks what
//! localstripe lacks and the adapter's calls rely on, with its own idempotency layer and
//! error objects: answers replayed under a key (`Idempotent-Replayed: true`), a changed
//! request under a used key refused `idempotency_error`, a `500` stored under its key and
//! replayed like any answer (which the adapter gets past with the key's next generation),
//! a `429` not stored, and a card error's `decline_code`. Its
//! source tokens inject the faults: `tok_429`, `tok_500`, chains such as
//! `tok_500|tok_visa|<nonce>`.
//!
//! It is found as `$STRIPE_STATEFUL_MOCK` (the path of its `dist/cli.js`), else in
//! `.fakes/npm` at the root of the workspace, where `scripts/stripe-fakes.sh` installs it.

use std::path::PathBuf;
use std::time::Duration;

/// The version `scripts/stripe-fakes.sh` installs.
pub const VERSION: &str = "0.0.16";

fn cli() -> PathBuf {
    if let Some(path) = std::env::var_os("STRIPE_STATEFUL_MOCK") {
        return path.into();
    }
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.fakes/npm/node_modules/stripe-stateful-mock/dist/cli.js");
    assert!(
        installed.is_file(),
        "stripe-stateful-mock is not installed: run scripts/stripe-fakes.sh (it installs it \
         from npm into .fakes/npm), or set STRIPE_STATEFUL_MOCK to its dist/cli.js"
    );
    installed
}

/// stripe-stateful-mock on a free port; it stops when this is dropped.
pub struct StatefulMock {
    url: String,
    child: tokio::process::Child,
}

impl Drop for StatefulMock {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl StatefulMock {
    /// Starts it with Node.js; panics, saying how to install it, when it is missing, and
    /// when it does not answer within 20 s.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = tokio::process::Command::new("node")
            .arg(cli())
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "silent")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs stripe-stateful-mock (Debian's nodejs; scripts/stripe-fakes.sh)");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let probe = client
                .get(format!("{url}/v1/customers"))
                .bearer_auth(crate::testing::API_KEY)
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return Self { url, child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("stripe-stateful-mock answers on {url} within 20 s");
    }

    /// The URL to give the gateway.
    pub fn url(&self) -> &str {
        &self.url
    }
}
