//! Connection reuse that cannot race: a pooled client connection never outlives the server's
//! keep-alive, and the gateway repeats what nginx would when a connection fails anyway.
//!
//! The race: a server closes an idle keep-alive connection at the very moment its client
//! writes the next request on it. The request is lost with "connection closed before message
//! completed" (the gateway turned that into `502 billing is unavailable`). On a quiet loopback
//! the window is a few microseconds; [`Relay`] stretches it so that it opens every time: it
//! sits between client and server, withholds the server's close from the client, and when the
//! client next writes on that connection, drops the request and closes it.
//!
//! Scaled down: the servers keep idle connections 1.5 s (`KEEP_ALIVE`; actix may close one up
//! to 0.5 s early, see `common::settings::KEEP_ALIVE_MARGIN`), the project's clients drop them
//! after 0.5 s, and the pauses between requests are 0.25 s (reuse) or 1.7 s (past both).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{http::Running, settings::ClientSettings, testing::TestDir};
use reqwest::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The servers' keep-alive in these tests (`KEEP_ALIVE`).
const KEEP_ALIVE: &str = "1500ms";
/// The project's alignment, scaled down: clients drop idle connections a second earlier.
const ALIGNED_IDLE: Duration = Duration::from_millis(500);
/// reqwest's default idle timeout, which the clients had before: longer than any keep-alive.
const REQWEST_DEFAULT_IDLE: Duration = Duration::from_secs(90);
/// A pause after which a pooled connection is reused by every client.
const SHORT: Duration = Duration::from_millis(250);
/// A pause longer than `KEEP_ALIVE`: the server has closed the idle connection by then.
const LONG: Duration = Duration::from_millis(1700);
/// Requests after a long pause, per test.
const ROUNDS: usize = 3;

/// A TCP relay in front of one server that turns "the server closed this idle connection"
/// into "the server closed it just as the client wrote its next request on it".
struct Relay {
    url: String,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Connections the client opened.
    accepted: AtomicUsize,
    /// Idle connections the server closed, whose close the client was not told about.
    withheld: AtomicUsize,
    /// Requests dropped unanswered because they were written on such a connection.
    cut: AtomicUsize,
}

impl Relay {
    async fn start(server: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        actix_web::rt::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let upstream = TcpStream::connect(server).await.unwrap();
                actix_web::rt::spawn(relay(client, upstream, Arc::clone(&shared)));
            }
        });
        Relay { url, counts }
    }

    fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    fn withheld(&self) -> usize {
        self.counts.withheld.load(Ordering::SeqCst)
    }

    fn cut(&self) -> usize {
        self.counts.cut.load(Ordering::SeqCst)
    }

    /// A long pause, and then until the server has closed `n` idle connections in all: the
    /// state in which a reuse writes into a closed connection. Polls, so that a slow machine
    /// only makes it wait longer.
    async fn until_withheld(&self, n: usize) {
        actix_web::rt::time::sleep(LONG).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.withheld() < n {
            assert!(
                Instant::now() < deadline,
                "the server never closed the idle connection ({} of {n})",
                self.withheld()
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One relayed connection: bytes both ways until either side ends it, except that the
/// server's close is withheld, and the client's next request after it is dropped.
async fn relay(mut client: TcpStream, mut server: TcpStream, counts: Arc<Counts>) {
    let (mut up, mut down) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    let mut server_closed = false;
    loop {
        tokio::select! {
            read = client.read(&mut up) => match read {
                // the client ended the connection: so does the relay (both sockets dropped)
                Ok(0) | Err(_) => return,
                Ok(n) if !server_closed => {
                    if server.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                // a request written on a connection its server has closed: it is lost, and
                // the client learns of the close only now (the whole request was read, so
                // dropping the socket sends FIN, as the server's close did)
                Ok(_) => {
                    counts.cut.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            },
            read = server.read(&mut down), if !server_closed => match read {
                Ok(0) | Err(_) => {
                    server_closed = true;
                    counts.withheld.fetch_add(1, Ordering::SeqCst);
                }
                Ok(n) => {
                    if client.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

/// `service`'s settings with the tests' keep-alive, one worker, a free port and a fresh
/// SQLite file in `dir` (the requests here never reach the database).
fn settings<T>(dir: &TestDir, service: &str, extra: &[(&str, &str)]) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Default,
{
    let db = dir.path().join(format!("{service}.db"));
    let mut vars = vec![
        ("PORT", "0"),
        ("WORKERS", "1"),
        ("KEEP_ALIVE", KEEP_ALIVE),
        ("DATABASE_URL", db.to_str().unwrap()),
    ];
    vars.extend_from_slice(extra);
    common::settings::load_from(vars).unwrap()
}

/// Starts a service and a relay in front of it.
async fn behind_a_relay(service: anyhow::Result<Running>) -> Relay {
    let service = service.unwrap();
    let relay = Relay::start(([127, 0, 0, 1], service.port).into()).await;
    actix_web::rt::spawn(service.into_future());
    relay
}

/// A client built as the services build theirs, idle connections kept `idle`.
fn client(idle: Duration) -> reqwest::Client {
    let settings = ClientSettings {
        http_pool_idle_timeout: idle,
        http_timeout: Duration::from_secs(30),
        ..ClientSettings::default()
    };
    common::http::client(&settings, None).unwrap()
}

/// `GET /health` through `relay`: the status, or why there was none.
async fn health(client: &reqwest::Client, relay: &Relay) -> Result<StatusCode, String> {
    match client.get(format!("{}/health", relay.url)).send().await {
        Ok(answer) => Ok(answer.status()),
        Err(e) => Err(common::problem::chain(&e)),
    }
}

#[actix_web::test]
async fn a_client_that_keeps_idle_connections_longer_than_the_server_loses_every_reuse() {
    common::telemetry::init_for_tests();
    let dir = TestDir::new("keep-alive");
    let relay = behind_a_relay(billing::start(settings(&dir, "billing", &[]))).await;
    let client = client(REQWEST_DEFAULT_IDLE);

    let mut failures = Vec::new();
    for round in 1..=ROUNDS {
        assert_eq!(health(&client, &relay).await, Ok(StatusCode::OK));
        relay.until_withheld(round).await;
        if let Err(failure) = health(&client, &relay).await {
            failures.push(failure);
        }
    }

    println!("reqwest's 90 s idle timeout, KEEP_ALIVE={KEEP_ALIVE}: {failures:#?}");
    // the harness reproduces the race: N of N requests written on a closed connection fail
    assert_eq!(failures.len(), ROUNDS, "{failures:?}");
    assert_eq!(relay.cut(), ROUNDS);
    for failure in &failures {
        assert!(
            failure.contains("connection closed before message completed"),
            "{failure}"
        );
    }
}

#[actix_web::test]
async fn a_client_that_drops_idle_connections_before_the_server_loses_none() {
    common::telemetry::init_for_tests();
    let dir = TestDir::new("keep-alive");
    let relay = behind_a_relay(billing::start(settings(&dir, "billing", &[]))).await;
    let client = client(ALIGNED_IDLE);

    let mut answers = Vec::new();
    assert_eq!(health(&client, &relay).await, Ok(StatusCode::OK));
    for _ in 0..ROUNDS {
        for pause in [SHORT, LONG] {
            actix_web::rt::time::sleep(pause).await;
            answers.push(health(&client, &relay).await);
        }
    }

    let failed = answers.iter().filter(|a| a.is_err()).count();
    println!(
        "{ALIGNED_IDLE:?} idle timeout, KEEP_ALIVE={KEEP_ALIVE}: {failed} of {} requests \
         failed, {} connections for them",
        answers.len(),
        relay.accepted()
    );
    assert!(
        answers.iter().all(|a| *a == Ok(StatusCode::OK)),
        "{answers:?}"
    );
    assert_eq!(
        relay.cut(),
        0,
        "a request was written on a closed connection"
    );
    // each long pause started a new connection (the pool never reuses one idle past its
    // timeout), and short ones reused theirs: the test did exercise reuse (a short pause that
    // a loaded machine stretched past 0.5 s may start one more; never all of them do)
    assert!(
        (1 + ROUNDS..1 + 2 * ROUNDS).contains(&relay.accepted()),
        "{} connections",
        relay.accepted()
    );
}

#[actix_web::test]
async fn the_gateway_repeats_an_idempotent_request_lost_with_its_connection_and_no_post() {
    common::telemetry::init_for_tests();
    let dir = TestDir::new("keep-alive");
    let auth_settings: auth::Settings = settings(
        &dir,
        "auth",
        &[
            ("BCRYPT_COST", "4"),
            ("SESSION_KEY", &"k".repeat(64)),
            ("BILLING_URL", "http://127.0.0.1:9"),
        ],
    );
    let relay = behind_a_relay(auth::start(auth_settings)).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    let upstreams = stack::gateway::Upstreams {
        auth: relay.url.clone(),
        billing: relay.url.clone(),
        order: relay.url.clone(),
        notification: relay.url.clone(),
    };
    // the gateway's client as it was: idle connections outlive the service's keep-alive, so
    // the relay can make its connection fail under it
    let gateway = stack::gateway::serve(listener, upstreams, client(REQWEST_DEFAULT_IDLE)).unwrap();
    actix_web::rt::spawn(gateway);
    let http = common::testing::http_client();
    let signin = || http.get(format!("{gateway_url}/signin")).send();

    assert_eq!(signin().await.unwrap().status(), 200);
    relay.until_withheld(1).await;
    // GET is idempotent: lost with its connection, it is sent once more, on a new one
    let again = signin().await.unwrap();
    assert_eq!(again.status(), 200, "{:?}", again.text().await);
    assert_eq!((relay.cut(), relay.accepted()), (1, 2));

    relay.until_withheld(2).await;
    // POST may have been acted on: the client gets the 502, the gateway does not repeat it
    let login = http
        .post(format!("{gateway_url}/login"))
        .json(&serde_json::json!({"login": "alice", "password": "secret-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 502);
    assert_eq!(
        (relay.cut(), relay.accepted()),
        (2, 2),
        "sent once, not repeated"
    );
}
