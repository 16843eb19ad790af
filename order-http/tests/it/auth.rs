//! Access control with `AUTH_MODE=api_key`: every route against every kind of key, keys
//! managed over the API and with `order-http keys`, and keys never kept or logged in clear.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use order_api::keys::{CreateApiKeyRequest, Scope};
use order_api::orders::ListOrdersQuery;
use order_api::{ErrorBody, ErrorCode, OrderClient, paths};
use order_core::access::{NewApiKey, issue};
use order_core::memory::MemoryApiKeys;
use order_core::ports::ApiKeyStore;
use order_http::Role;
use order_http::testing::{Backend, Storage, TestApp, free_port, sample_json, sample_order};
use serde_json::json;

mod failures;
mod owners;

/// A service with `AUTH_MODE=api_key` and an administrator's key (all scopes), made the way
/// an operator makes the first one: straight in the store.
struct Secured {
    app: TestApp,
    admin: String,
    storage: Option<Storage>,
    key_file: Option<std::path::PathBuf>,
}

fn admin_key() -> (order_core::access::ApiKey, String) {
    issue(
        NewApiKey {
            name: "admin".into(),
            scopes: order_core::access::Scope::ALL.to_vec(),
            customer_id: None,
            expires_at: None,
        },
        chrono::Utc::now(),
    )
    .unwrap()
}

impl Secured {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// [`start`](Self::start), with more variables.
    async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let auth: Vec<(&str, &str)> = [("AUTH_MODE", "api_key")]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let (key, admin) = admin_key();
        match backend {
            Backend::Memory => {
                let file = std::env::temp_dir()
                    .join(format!("keys-{}.jsonl", uuid::Uuid::now_v7().simple()));
                MemoryApiKeys::append_to_file(&file, &key).unwrap();
                let path = file.to_string_lossy().into_owned();
                let app = TestApp::spawn_role(
                    Role::All,
                    Vec::new(),
                    &[auth.as_slice(), &[("API_KEYS_FILE", &path)]].concat(),
                )
                .await;
                Self {
                    app,
                    admin,
                    storage: None,
                    key_file: Some(file),
                }
            }
            Backend::PostgresRedis => {
                let storage = Storage::create().await;
                let app = TestApp::spawn_role(Role::All, storage.env(), &auth).await;
                storage.schema.repo().insert_key(&key).await.unwrap();
                Self {
                    app,
                    admin,
                    storage: Some(storage),
                    key_file: None,
                }
            }
        }
    }

    fn client(&self, key: &str) -> OrderClient {
        OrderClient::new(&self.app.base).unwrap().with_api_key(key)
    }

    /// A new key with `scopes`, bound to `customer` if given, made over the API.
    async fn key(
        &self,
        scopes: &[Scope],
        customer: Option<&str>,
        expires: Option<u64>,
    ) -> (String, String) {
        let created = self
            .client(&self.admin)
            .create_key(&CreateApiKeyRequest {
                name: format!("{scopes:?}"),
                scopes: scopes.to_vec(),
                customer_id: customer.map(str::to_owned),
                expires_in_seconds: expires,
            })
            .await
            .unwrap();
        (created.key, created.api_key.id)
    }

    async fn stop(self) {
        self.app.stop().await;
        if let Some(storage) = self.storage {
            storage.drop().await;
        }
        if let Some(file) = self.key_file {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Sends `method path` with `key` (if any) and a body for writes; returns the status, the
/// error code if any, and `WWW-Authenticate`.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, Option<ErrorCode>, Option<String>) {
    let mut request = app.http.request(method.parse().unwrap(), app.url(path));
    if let Some(key) = key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let code = if status >= 400 {
        response.json::<ErrorBody>().await.ok().map(|b| b.error)
    } else {
        None
    };
    (status, code, challenge)
}

async fn every_route_gives_the_documented_answer_for_every_kind_of_key(backend: Backend) {
    let s = Secured::start(backend).await;
    let all_orders = [Scope::OrdersRead, Scope::OrdersWrite, Scope::OrdersCancel];
    let (reader, _) = s.key(&[Scope::OrdersRead], None, None).await;
    let (writer, _) = s.key(&[Scope::OrdersWrite], None, None).await;
    let (canceller, _) = s.key(&[Scope::OrdersCancel], None, None).await;
    let (alice, _) = s.key(&all_orders, Some("alice"), None).await;
    let (revoked, revoked_id) = s.key(&all_orders, None, None).await;
    s.client(&s.admin).revoke_key(&revoked_id).await.unwrap();
    let (expired, _) = s.key(&all_orders, None, Some(1)).await;
    let (_, doomed_id) = s.key(&[Scope::OrdersRead], None, None).await;
    let unknown = admin_key().1;
    // Orders of bob's, and one of alice's, to read and cancel.
    let admin = s.client(&s.admin);
    let bobs = admin
        .create(&sample_order("bob"), None)
        .await
        .unwrap()
        .order
        .id;
    let bobs_too = admin
        .create(&sample_order("bob"), None)
        .await
        .unwrap()
        .order
        .id;
    let alices = admin
        .create(&sample_order("alice"), None)
        .await
        .unwrap()
        .order
        .id;
    tokio::time::sleep(Duration::from_millis(1100)).await; // `expired` has expired

    let order = paths::order(bobs);
    let cancel = paths::order_cancel(bobs);
    let cancel_too = paths::order_cancel(bobs_too);
    let revoke = paths::api_key(&doomed_id);
    let new_order = json!(sample_json("bob"));
    let new_key = json!({"name": "k", "scopes": ["orders:read"]});
    // (method, path, body, the scope it needs)
    let routes: [(&str, &str, Option<serde_json::Value>, Scope); 7] = [
        ("GET", paths::ORDERS, None, Scope::OrdersRead),
        ("GET", &order, None, Scope::OrdersRead),
        (
            "POST",
            paths::ORDERS,
            Some(new_order.clone()),
            Scope::OrdersWrite,
        ),
        ("POST", &cancel, None, Scope::OrdersCancel),
        ("GET", paths::API_KEYS, None, Scope::KeysManage),
        ("POST", paths::API_KEYS, Some(new_key), Scope::KeysManage),
        ("DELETE", &revoke, None, Scope::KeysManage),
    ];
    let invalid = Some("Bearer error=\"invalid_token\"".to_owned());
    for (method, path, body, scope) in &routes {
        let what = format!("{method} {path}");
        for (name, key) in [
            ("no key", None),
            ("not a key", Some("nope")),
            ("unknown", Some(unknown.as_str())),
            ("revoked", Some(revoked.as_str())),
            ("expired", Some(expired.as_str())),
        ] {
            let got = call(&s.app, method, path, key, body.clone()).await;
            assert_eq!(
                got,
                (401, Some(ErrorCode::Unauthorized), invalid.clone()),
                "{what} with {name}"
            );
        }
        let wrong = if *scope == Scope::OrdersRead {
            &writer
        } else {
            &reader
        };
        let (status, code, challenge) = call(&s.app, method, path, Some(wrong), body.clone()).await;
        assert_eq!(
            (status, code),
            (403, Some(ErrorCode::InsufficientScope)),
            "{what}, wrong scope"
        );
        assert!(
            challenge
                .is_some_and(|c| c.contains("insufficient_scope") && c.contains(scope.as_str())),
            "{what}: the challenge names {}",
            scope.as_str()
        );
        let right = match scope {
            Scope::OrdersRead => &reader,
            Scope::OrdersWrite => &writer,
            Scope::OrdersCancel => &canceller,
            _ => &s.admin,
        };
        let (status, code, _) = call(&s.app, method, path, Some(right), body.clone()).await;
        assert!(
            (200..300).contains(&status),
            "{what} with the right scope: {status} {code:?}"
        );
    }

    // A key bound to alice: her orders only, and bob's do not exist for it.
    let (status, code, _) = call(&s.app, "GET", &order, Some(&alice), None).await;
    assert_eq!(
        (status, code),
        (404, Some(ErrorCode::NotFound)),
        "bob's order, to alice's key"
    );
    let (status, code, _) = call(&s.app, "POST", &cancel_too, Some(&alice), None).await;
    assert_eq!(
        (status, code),
        (404, Some(ErrorCode::NotFound)),
        "cancel bob's, with alice's key"
    );
    let (status, code, _) =
        call(&s.app, "POST", paths::ORDERS, Some(&alice), Some(new_order)).await;
    assert_eq!(
        (status, code),
        (403, Some(ErrorCode::Forbidden)),
        "place for bob"
    );
    let (status, code, _) = call(
        &s.app,
        "GET",
        &format!("{}?customer_id=bob", paths::ORDERS),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (status, code),
        (403, Some(ErrorCode::Forbidden)),
        "list bob's"
    );
    let mine = s
        .client(&alice)
        .list(&ListOrdersQuery::default())
        .await
        .unwrap();
    assert_eq!(
        mine.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        [alices],
        "alice's key lists alice's orders only"
    );
    assert_eq!(s.client(&alice).get(alices).await.unwrap().id, alices);
    assert!(
        s.client(&alice)
            .create(&sample_order("alice"), None)
            .await
            .is_ok()
    );

    // What stays open.
    for path in [paths::HEALTH, paths::READY, paths::OPENAPI, paths::ROOT] {
        assert_eq!(call(&s.app, "GET", path, None, None).await.0, 200, "{path}");
    }
    // The document served says so, with each operation's scope from the same table.
    let doc: serde_json::Value = s
        .app
        .http
        .get(s.app.url(paths::OPENAPI))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (method, path, scope) in [
        ("post", paths::ORDERS, "orders:write"),
        ("get", paths::ORDER, "orders:read"),
        ("post", paths::ORDER_CANCEL, "orders:cancel"),
        ("post", paths::ORDER_CAPTURE, "payments:capture"),
        ("post", paths::ORDER_REFUNDS, "payments:refund"),
        ("delete", paths::API_KEY, "keys:manage"),
    ] {
        let operation = &doc["paths"][path][method];
        assert_eq!(
            operation["security"],
            json!([{"api_key": [scope]}]),
            "{method} {path}"
        );
        assert!(operation["responses"]["401"].is_object(), "{method} {path}");
    }
    assert!(doc["paths"][paths::HEALTH]["get"]["security"].is_null());
    s.stop().await;
}

async fn a_key_cannot_mint_a_stronger_one_and_a_revoked_key_stops_at_once(backend: Backend) {
    let s = Secured::start(backend).await;
    let (manager, _) = s
        .key(&[Scope::KeysManage, Scope::OrdersRead], None, None)
        .await;
    let stronger = s
        .client(&manager)
        .create_key(&CreateApiKeyRequest {
            name: "escalation".into(),
            scopes: vec![Scope::OrdersWrite],
            customer_id: None,
            expires_in_seconds: None,
        })
        .await;
    assert_eq!(
        stronger.unwrap_err().code(),
        Some(ErrorCode::Forbidden),
        "no more scopes than its own"
    );
    let bad = call(
        &s.app,
        "POST",
        paths::API_KEYS,
        Some(&s.admin),
        Some(json!({"name": "", "scopes": ["orders:delete"], "expires_in_seconds": 0})),
    )
    .await;
    assert_eq!((bad.0, bad.1), (422, Some(ErrorCode::ValidationFailed)));
    // Nor may it revoke a key that may do more than it: the administrator's own.
    let admins = s.client(&s.admin).list_keys().await.unwrap();
    let admin_id = admins
        .keys
        .iter()
        .find(|k| k.scopes.contains(&Scope::WebhooksManage))
        .unwrap()
        .id
        .clone();
    let coup = s.client(&manager).revoke_key(&admin_id).await;
    assert_eq!(coup.unwrap_err().code(), Some(ErrorCode::Forbidden));
    assert!(
        s.client(&s.admin)
            .list(&ListOrdersQuery::default())
            .await
            .is_ok(),
        "the administrator's key still works"
    );

    let (reader, id) = s.key(&[Scope::OrdersRead], None, None).await;
    assert!(
        s.client(&reader)
            .list(&ListOrdersQuery::default())
            .await
            .is_ok()
    );
    let revoked = s.client(&s.admin).revoke_key(&id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let after = s
        .client(&reader)
        .list(&ListOrdersQuery::default())
        .await
        .unwrap_err();
    assert_eq!(after.status(), Some(401), "revoked here: refused at once");
    let listed = s.client(&s.admin).list_keys().await.unwrap();
    assert!(
        listed
            .keys
            .iter()
            .any(|k| k.id == id && k.revoked_at.is_some())
    );
    s.stop().await;
}

/// Two callers that happen to send the same `Idempotency-Key` each get their own order;
/// each replays only its own.
async fn each_key_has_its_own_idempotency_keys(backend: Backend) {
    let s = Secured::start(backend).await;
    let (alice, _) = s.key(&[Scope::OrdersWrite], None, None).await;
    let (bob, _) = s.key(&[Scope::OrdersWrite], None, None).await;
    let key = "checkout-42";
    let first = s
        .client(&alice)
        .create(&sample_order("alice"), Some(key))
        .await
        .unwrap();
    let other = s
        .client(&bob)
        .create(&sample_order("bob"), Some(key))
        .await
        .expect("another caller's key is no conflict");
    assert!(!other.replayed);
    assert_ne!(first.order.id, other.order.id);
    assert_eq!(other.order.customer_id, "bob");
    let again = s
        .client(&alice)
        .create(&sample_order("alice"), Some(key))
        .await
        .unwrap();
    assert!(again.replayed, "the same caller's retry is a replay");
    assert_eq!(again.order.id, first.order.id);
    s.stop().await;
}

on_both_backends!(
    each_key_has_its_own_idempotency_keys,
    every_route_gives_the_documented_answer_for_every_kind_of_key,
    a_key_cannot_mint_a_stronger_one_and_a_revoked_key_stops_at_once,
);

#[tokio::test]
async fn without_auth_the_original_api_needs_no_key() {
    let app = TestApp::spawn(Backend::Memory, &[]).await;
    assert!(app.client.create(&sample_order("open"), None).await.is_ok());
    assert!(app.client.list(&ListOrdersQuery::default()).await.is_ok());
    // No key is minted over an open API: it would still work once keys are asked for.
    let minted = app
        .client
        .create_key(&CreateApiKeyRequest {
            name: "backdoor".into(),
            scopes: vec![Scope::KeysManage],
            customer_id: None,
            expires_in_seconds: None,
        })
        .await;
    assert_eq!(minted.unwrap_err().code(), Some(ErrorCode::Forbidden));
    assert!(app.client.list_keys().await.unwrap().keys.is_empty());
    app.stop().await;
}

/// Runs `order-http` with `args` and `env`; returns stdout, stderr and success.
fn order_http(args: &[&str], env: &[(&str, &str)]) -> (String, String, bool) {
    let output = Command::new(env!("CARGO_BIN_EXE_order-http"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

#[tokio::test]
async fn keys_made_with_order_http_keys_work_and_are_never_stored_or_logged_in_clear() {
    let storage = Storage::create().await;
    let env: Vec<(String, String)> = storage.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // The first key, made straight in PostgreSQL: the key alone on stdout.
    let (stdout, stderr, ok) = order_http(
        &[
            "keys",
            "create",
            "--name",
            "ops",
            "--scopes",
            "orders:read,orders:write,keys:manage",
            "--expires-in",
            "1d",
        ],
        &env,
    );
    assert!(ok, "{stderr}");
    let key = stdout.trim().to_owned();
    assert!(
        key.starts_with("ordk_") && !key.contains(char::is_whitespace),
        "{stdout:?}"
    );
    let secret = key.rsplit('_').next().unwrap().to_owned();
    let (listing, _, ok) = order_http(&["keys", "list"], &env);
    assert!(
        ok && listing.contains("ops") && !listing.contains(&secret),
        "{listing}"
    );

    // The service, logging everything it logs, used with that key.
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_order-http"))
        .env_clear()
        .envs(env.iter().copied())
        .envs([
            ("PORT", port.to_string().as_str()),
            ("HOST", "127.0.0.1"),
            ("AUTH_MODE", "api_key"),
            ("LOG_LEVEL", "trace"),
        ])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let logs = std::thread::spawn(move || {
        let mut all: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect();
        all.extend(BufReader::new(stderr).lines().map_while(Result::ok));
        all.join("\n")
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = OrderClient::new(&base).unwrap().with_api_key(&key);
    let start = Instant::now();
    while !matches!(client.ready().await, Ok(r) if r.status == order_api::health::Readiness::Ready)
    {
        assert!(start.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let placed = client.create(&sample_order("carol"), None).await.unwrap();
    assert_eq!(
        client.get(placed.order.id).await.unwrap().id,
        placed.order.id
    );
    let made = client
        .create_key(&CreateApiKeyRequest {
            name: "child".into(),
            scopes: vec![Scope::OrdersRead],
            customer_id: None,
            expires_in_seconds: None,
        })
        .await
        .unwrap();
    let wrong = OrderClient::new(&base)
        .unwrap()
        .with_api_key(with_last_char_changed(&key));
    assert_eq!(
        wrong
            .list(&ListOrdersQuery::default())
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let logs = logs.join().unwrap();
    assert!(
        logs.contains("API key created"),
        "the logs were captured: {logs}"
    );
    for secret in [&secret, &made.key.rsplit('_').next().unwrap().to_owned()] {
        assert!(!logs.contains(secret.as_str()), "a secret was logged");
    }

    // The table holds hashes: no column of any row contains a secret.
    let rows: Vec<String> = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k")
        .fetch_all(storage.schema.repo().pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| !r.contains(&secret) && !r.contains(&made.key)),
        "{rows:?}"
    );
    let (stdout, _, ok) = order_http(&["keys", "revoke", &made.api_key.id], &env);
    assert!(ok && stdout.contains("revoked"), "{stdout}");
    storage.drop().await;
}

/// `key` with its last character replaced by a different one, so the result
/// is never the key itself whatever character the key happened to end with.
fn with_last_char_changed(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    let other = if last == "0" { '1' } else { '0' };
    format!("{head}{other}")
}
