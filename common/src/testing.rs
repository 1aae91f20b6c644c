//! Helpers for the services' integration tests (feature `test-util`).
//!
//! Every test gets its own database: a fresh SQLite file by default, or a fresh PostgreSQL
//! database created on the server named by `TEST_DATABASE_URL` when it is set. The test
//! command runs the whole suite once per backend. A [`TestDatabase`] removes its database
//! when its last user drops it, so a full run leaves nothing behind on either backend.
//!
//! Each service builds its `testing::spawn` on [`spawn_service`]: the service on a free
//! loopback port, with a fresh database, as a [`Spawned`] that stops it when dropped.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::dev::ServerHandle;
use diesel::{Connection, QueryableByName, RunQueryDsl, pg::PgConnection, sql_types::BigInt};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Money,
    db::{self, Backend},
    http::Running,
};

/// Which backend this test run uses, for messages.
pub fn backend() -> Backend {
    match admin_url() {
        Some(url) => db::Backend::of(&url),
        None => Backend::Sqlite,
    }
}

/// `TEST_DATABASE_URL`, when the run is on PostgreSQL.
fn admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Where tests keep their files: one directory, so a stray leftover is easy to find.
fn tests_root() -> PathBuf {
    std::env::temp_dir().join("shop-tests")
}

/// A directory path no test has used before (created when something writes into it): unique
/// by uuid, because names made from ports or pids repeat across runs and would reuse old data.
/// Nothing removes it: prefer [`TestDir`], which does.
pub fn fresh_dir(name: &str) -> PathBuf {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    tests_root().join(format!("{name}-{unique}"))
}

/// A [`fresh_dir`] that is removed with everything in it when this is dropped.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// A new, not yet created, directory named after `name`.
    pub fn new(name: &str) -> Self {
        Self {
            path: fresh_dir(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (for a failed test's evidence): it is no longer removed on drop.
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // only ever a directory fresh_dir named: below the tests' root, never the root itself
        let root = tests_root();
        if !self.path.starts_with(&root) || self.path == root {
            return;
        }
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Drop may run while a failed test unwinds: report, never panic
            Err(e) => eprintln!("test directory {} not removed: {e}", self.path.display()),
        }
    }
}

/// A brand-new, empty database for one test, removed when dropped: on PostgreSQL
/// `DROP DATABASE … WITH (FORCE)` (which also ends connections a pool still holds), on SQLite
/// its directory. Shared through an `Arc` by every service that runs on it (a restart, a
/// second replica), so it goes when the last of them does.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    location: Location,
}

#[derive(Debug)]
enum Location {
    /// Database `name` on the server of the admin URL `TEST_DATABASE_URL`.
    Postgres { admin_url: String, name: String },
    /// A SQLite file inside its own directory, held for its `Drop`.
    Sqlite { _dir: TestDir },
}

impl TestDatabase {
    /// A new database named after `service` (`billing_<16 hex>` on PostgreSQL).
    pub fn fresh(service: &str) -> Arc<Self> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let database = match admin_url() {
            Some(admin_url) => {
                let name = format!("{service}_{}", &unique[..16]);
                diesel::sql_query(format!(r#"CREATE DATABASE "{name}""#))
                    .execute(&mut admin(&admin_url))
                    .expect("create test database");
                Self {
                    url: database_url_on(&admin_url, &name),
                    location: Location::Postgres { admin_url, name },
                }
            }
            None => {
                let dir = TestDir::new(service);
                Self {
                    url: dir
                        .path()
                        .join(format!("{service}.db"))
                        .to_string_lossy()
                        .into_owned(),
                    location: Location::Sqlite { _dir: dir },
                }
            }
        };
        Arc::new(database)
    }

    /// The `DATABASE_URL` a service uses for it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Location::Postgres { admin_url, name } = &self.location {
            // Blocking, on the test's own thread: the services run on their own worker
            // threads, and FORCE ends their connections instead of waiting for them.
            let dropped = PgConnection::establish(admin_url)
                .map_err(|e| e.to_string())
                .and_then(|mut admin| {
                    diesel::sql_query(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                        .execute(&mut admin)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = dropped {
                eprintln!("test database {name} not dropped: {e}");
            }
        }
        // a SQLite database's directory goes with its TestDir
    }
}

/// An admin connection to the server of `TEST_DATABASE_URL`.
fn admin(admin_url: &str) -> PgConnection {
    PgConnection::establish(admin_url)
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL: cannot connect: {e}"))
}

/// The URL of database `name` on the server of `admin_url`.
fn database_url_on(admin_url: &str, name: &str) -> String {
    let base = admin_url.split('?').next().unwrap_or(admin_url);
    let (server, _) = base
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL has a database");
    format!("{server}/{name}")
}

/// Whether the database of a test `DATABASE_URL` still exists: on PostgreSQL, asked of the
/// server of `TEST_DATABASE_URL`; on SQLite, whether its file is there. For the test that
/// proves [`TestDatabase`] leaves nothing behind.
pub fn database_exists(url: &str) -> bool {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    match admin_url() {
        Some(admin_url) => {
            let name = url.rsplit('/').next().unwrap_or(url);
            // the name is ours (service_hex) and is checked, so it is safe to quote
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "not a test database name: {name}"
            );
            diesel::sql_query(format!(
                "SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'"
            ))
            .get_result::<Count>(&mut admin(&admin_url))
            .expect("count databases")
            .n > 0
        }
        None => Path::new(url).exists(),
    }
}

/// A service under test, running on `127.0.0.1:port` on the test's runtime. Dropping it
/// stops the server and lets go of its database (dropped once no other `Spawned` uses it).
#[must_use = "dropping a Spawned stops the service and drops its database"]
pub struct Spawned {
    /// The service's name, as in its log lines.
    pub name: &'static str,
    pub port: u16,
    /// `http://127.0.0.1:port`.
    pub address: String,
    handle: ServerHandle,
    database: Arc<TestDatabase>,
}

impl Spawned {
    /// The `DATABASE_URL` it runs on.
    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// Its database, to start another instance on (a restart, a second replica).
    pub fn database(&self) -> Arc<TestDatabase> {
        self.database.clone()
    }

    /// Stops accepting, lets in-flight requests finish, then resolves.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Sends the stop now; the runtime carries it out when it next runs, or drops the
        // server with the test's runtime. The database goes with the last `Arc`.
        drop(self.handle.stop(false));
    }
}

/// Starts a service the way its binary does, on a free loopback port and on `database`, and
/// runs it on the current actix runtime. Its settings: `PORT=0`, the shared
/// [`INTERNAL_TOKEN`], `DATABASE_URL`, then `defaults` (the service's choices for tests), then
/// `extra` (the test's own), later ones winning. Panics if it cannot start.
pub async fn spawn_service<S>(
    name: &'static str,
    database: Arc<TestDatabase>,
    defaults: &[(&str, &str)],
    extra: &[(&str, &str)],
    start: impl FnOnce(S) -> anyhow::Result<Running>,
) -> Spawned
where
    S: Serialize + DeserializeOwned + Default,
{
    crate::telemetry::init_for_tests();
    let mut vars = vec![
        ("PORT", "0"),
        ("INTERNAL_TOKEN", INTERNAL_TOKEN),
        ("DATABASE_URL", database.url()),
    ];
    vars.extend_from_slice(defaults);
    vars.extend_from_slice(extra);
    let settings =
        crate::settings::load_from(vars).unwrap_or_else(|e| panic!("{name}: test settings: {e:#}"));
    let running = start(settings).unwrap_or_else(|e| panic!("{name} does not start: {e:#}"));
    let (port, handle) = (running.port, running.handle());
    // servers serve only while polled: on the test's runtime, which drops them at its end
    actix_web::rt::spawn(running.into_future());
    Spawned {
        name,
        port,
        address: format!("http://127.0.0.1:{port}"),
        handle,
        database,
    }
}

/// Polls `probe` every 50 ms until it answers `Some`, and returns that; panics naming `what`
/// if `deadline` passes first. Tests wait for a condition with it, never for a fixed time: a
/// slow machine makes them slower, not wrong.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `sqlite` or `postgres`, for the figures tests print.
pub fn backend_name() -> &'static str {
    match backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// A plain HTTP client for driving a service under test.
pub fn http_client() -> reqwest::Client {
    crate::http::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("test HTTP client")
}

/// Every event logged in this process once installed, at debug level and above, as the JSON
/// lines `LOG_FORMAT=json` writes: for tests of what is logged (trace ids across services).
/// The subscriber is process-wide (the services log from their own worker threads), so a
/// test that installs it must not run with `TEST_LOG`.
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the capturing subscriber; panics if one is installed already.
    pub fn install() -> Self {
        use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::Targets::new().with_default(tracing::Level::DEBUG))
            .with(crate::telemetry::json_layer(move || {
                CaptureWriter(sink.clone())
            }))
            .try_init()
            .expect("no other subscriber installed (unset TEST_LOG)");
        Self(buffer)
    }

    /// The events so far, one JSON object each.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("not poisoned").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect()
    }
}

struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One scrape of a service's `GET /metrics`.
#[derive(Debug, Clone)]
pub struct Scrape(pub String);

impl Scrape {
    /// Scrapes the service at `address` (its own port); panics unless it answers 200.
    pub async fn of(address: &str) -> Self {
        let res = http_client()
            .get(format!("{address}/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(res.status(), 200, "GET {address}/metrics");
        Self(res.text().await.expect("a text body"))
    }

    /// The samples: `(name, labels, value)` of every line that is not a comment.
    pub fn samples(&self) -> impl Iterator<Item = (&str, Vec<(&str, &str)>, f64)> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("name and value");
                let value = value.parse().expect("a number");
                match series.split_once('{') {
                    None => (series, Vec::new(), value),
                    Some((name, labels)) => {
                        let labels = labels
                            .trim_end_matches('}')
                            .split("\",")
                            .filter(|p| !p.is_empty())
                            .map(|pair| {
                                let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                                (k, v.trim_end_matches('"'))
                            })
                            .collect();
                        (name, labels, value)
                    }
                }
            })
    }

    /// The value of `name`'s one series that has all of `labels` (0 when none has); panics
    /// if several have.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .samples()
            .filter(|(n, l, _)| *n == name && labels.iter().all(|pair| l.contains(pair)))
            .map(|(_, _, v)| v)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name}{labels:?} matches {} series",
            matching.len()
        );
        matching.first().copied().unwrap_or(0.0)
    }

    /// How many series the service exposes.
    pub fn series(&self) -> usize {
        self.samples().count()
    }
}

/// A loopback port that was free a moment ago: for a service a test starts later, to stand
/// for one that is down now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Asserts an RFC 9457 problem answer with `status` and returns its body.
pub async fn assert_problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(res.status(), status, "status of {}", res.url());
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: serde_json::Value = res.json().await.expect("a JSON body");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["type"], "about:blank", "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The exact amount a JSON answer carries (`2000.5` → 200050 minor units), read from the
/// number's own text, never through `f64`; panics on anything that is not an amount.
pub fn money(value: &serde_json::Value) -> Money {
    match value {
        serde_json::Value::Number(n) => Money::parse_answer(&n.to_string())
            .unwrap_or_else(|e| panic!("{n} is not an amount: {e}")),
        other => panic!("{other} is not an amount"),
    }
}

/// The service credential every service under test shares.
pub const INTERNAL_TOKEN: &str = "test-internal-token";

/// How many different values `answers` holds (by their JSON text): what concurrent-duplicate
/// tests print and assert to be 1.
pub fn distinct(answers: &[serde_json::Value]) -> usize {
    answers
        .iter()
        .map(|a| a.to_string())
        .collect::<std::collections::HashSet<_>>()
        .len()
}
