//! Test support: a fresh, migrated schema per test on the local PostgreSQL, so tests run in
//! parallel and leave nothing behind that the next run trips over.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::{PgOrderRepo, PoolConfig, connect_options, lazy_pool, migrate};

/// The server tests use: `TEST_DATABASE_URL`, else the local default.
pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema made for one test; drop it with [`TestSchema::drop`] when the test is done.
#[derive(Debug)]
pub struct TestSchema {
    /// The schema's name.
    pub name: String,
    /// A pool whose connections use the schema.
    pub pool: PgPool,
    /// The connection options, schema included (for other pools of the same test).
    pub options: PgConnectOptions,
}

impl TestSchema {
    /// Creates and migrates a new schema. Panics, saying how to start PostgreSQL, if the
    /// server does not answer: a test needing it must never pass without it.
    pub async fn create() -> Self {
        let schema = Self::empty().await;
        migrate(&schema.pool).await.expect("migrate test schema");
        schema
    }

    /// Creates a new schema without migrating it (for tests of the migrations themselves).
    /// Panics as [`TestSchema::create`] does.
    pub async fn empty() -> Self {
        let url = database_url();
        let mut admin = PgConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url} ({e}). Start it with \
                 `scripts/ensure-services.sh` (or `pg_ctlcluster --skip-systemctl-redirect \
                 $(ls /etc/postgresql) main start`), or point TEST_DATABASE_URL at a server."
            )
        });
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .expect("create test schema");
        let _ = admin.close().await;
        let options = connect_options(&url)
            .expect("valid TEST_DATABASE_URL")
            .options([("search_path", name.as_str())]);
        let pool = lazy_pool(options.clone(), &PoolConfig::default());
        Self {
            name,
            pool,
            options,
        }
    }

    /// A repo on this schema.
    pub fn repo(&self) -> PgOrderRepo {
        PgOrderRepo::new(self.pool.clone())
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&database_url()).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
        }
    }
}

/// A PostgreSQL server of the test's own (a fresh cluster in a temporary directory, on its
/// own port), which a test can stop and start again without disturbing other tests.
///
/// It runs as the `postgres` system user through `runuser`, with the binaries in
/// `PG_BIN_DIR` (default `/usr/lib/postgresql/15/bin`), so the test process must be root, as
/// on the project's machines. Stopped and deleted on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: std::path::PathBuf,
    port: u16,
    running: bool,
}

fn pg_bin(tool: &str) -> String {
    let dir = std::env::var("PG_BIN_DIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    format!("{dir}/{tool}")
}

/// Runs a PostgreSQL tool as the `postgres` user; panics with its output when it fails.
fn as_postgres(tool: &str, args: &[&str]) {
    let output = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", &pg_bin(tool)])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} as postgres (runuser, as root): {e}"));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivatePostgres {
    /// Creates a cluster that will listen on 127.0.0.1:`port` (not started yet).
    pub fn create(port: u16) -> Self {
        let dir =
            std::env::temp_dir().join(format!("private-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let status = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("run chown");
        assert!(
            status.success(),
            "chown the cluster's directory to postgres"
        );
        let data = dir.join("data");
        as_postgres(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-N",
            ],
        );
        Self {
            dir,
            port,
            running: false,
        }
    }

    /// Makes the server offer TLS with `cert` and `key` (PEM files) from its next start;
    /// clients may still connect without it (`sslmode` decides).
    pub fn enable_tls(&self, cert: &std::path::Path, key: &std::path::Path) {
        let data = self.dir.join("data");
        for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
            std::fs::copy(from, data.join(to)).expect("copy the certificate into the cluster");
        }
        let status = std::process::Command::new("chown")
            .args(["postgres:postgres", "server.crt", "server.key"])
            .current_dir(&data)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown the certificate to postgres");
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("the key readable by its owner only");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        std::io::Write::write_all(&mut conf, b"ssl = on\n").expect("turn TLS on");
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) {
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn crash(&mut self) {
        if self.running {
            as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    &self.dir.join("data").to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
            self.running = false;
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--", &pg_bin("pg_ctl")])
                .args([
                    "-D",
                    &self.dir.join("data").to_string_lossy(),
                    "-m",
                    "immediate",
                    "stop",
                ])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
