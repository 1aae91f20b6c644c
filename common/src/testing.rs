//! Helpers for the services' integration tests (feature `test-util`).
//!
//! Every test gets its own database: a fresh SQLite file by default, or a fresh PostgreSQL
//! database created on the server named by `TEST_DATABASE_URL` when it is set. The test
//! command runs the whole suite once per backend.

use diesel::{Connection, RunQueryDsl, pg::PgConnection};

use crate::db::{self, Backend};

/// Which backend this test run uses, for messages.
pub fn backend() -> Backend {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => db::Backend::of(&url),
        _ => Backend::Sqlite,
    }
}

/// A directory path no test has used before (created when something writes into it): unique
/// by uuid, because names made from ports or pids repeat across runs and would reuse old data.
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    std::env::temp_dir()
        .join("shop-tests")
        .join(format!("{name}-{unique}"))
}

/// A `DATABASE_URL` for a brand-new, empty database named after `service`.
pub fn fresh_database_url(service: &str) -> String {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let name = format!("{service}_{}", &unique[..16]);
            let mut admin = PgConnection::establish(&admin_url)
                .unwrap_or_else(|e| panic!("TEST_DATABASE_URL: cannot connect: {e}"));
            diesel::sql_query(format!(r#"CREATE DATABASE "{name}""#))
                .execute(&mut admin)
                .expect("create test database");
            let base = admin_url.split('?').next().unwrap_or(&admin_url);
            let (server, _) = base
                .rsplit_once('/')
                .expect("TEST_DATABASE_URL has a database");
            format!("{server}/{name}")
        }
        _ => {
            let dir = std::env::temp_dir().join("shop-tests").join(&unique);
            dir.join(format!("{service}.db"))
                .to_string_lossy()
                .into_owned()
        }
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
