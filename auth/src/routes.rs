//! Auth's HTTP surface. The whole route table is [`configure`].

use std::sync::Arc;

use actix_session::{
    Session, SessionMiddleware,
    config::{CookieContentSecurity, PersistentSession},
    storage::SessionKey,
};
use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{CookieJar, Key, SameSite, time::Duration as CookieDuration},
    http::header::{CACHE_CONTROL, HeaderValue},
    web,
};
use common::{
    Identity, Json,
    db::{self, DbError, Pool},
    openapi::{JsonBodyErrors, ProblemSchema, ProtectedErrors, PublicErrors, SessionCookie},
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::{
    billing_client::BillingClient,
    db::{NewUser, ProfileChange, User, attempts, now},
    domain::{Email, Login, Name, Password, key_of},
    error::{AuthError, Result},
    metrics::{self, AuthMetrics},
    password::Hasher,
    session_cache::{Lookup, SessionCache},
    session_store::{DbSessionStore, USER_ID, row_id},
};

/// The name of the session cookie (api-contract.md).
pub const COOKIE_NAME: &str = "session_id";

/// What the handlers share.
pub struct AuthState {
    pub hasher: Hasher,
    pub billing: BillingClient,
    pub login_limit: LoginLimit,
    pub metrics: AuthMetrics,
}

/// How many failed logins one login may have in a window.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimit {
    pub max_failures: i32,
    pub window: chrono::Duration,
}

/// How session cookies are made.
#[derive(Clone)]
pub struct SessionConfig {
    pub store: DbSessionStore,
    /// The forward-auth check's cache; the store evicts what it changes.
    pub cache: SessionCache,
    pub key: Key,
    pub ttl: std::time::Duration,
    pub secure: bool,
}

/// What the forward-auth check needs: the cookie key and the session cache. It reads the
/// cookie itself instead of going through the session middleware: a cached session then costs
/// no database read, and a missed one a single query (session joined to its user).
struct ForwardAuth {
    key: Key,
    cache: SessionCache,
}

impl ForwardAuth {
    /// The row id of the session the request's cookie names, if the cookie is genuine (it is
    /// encrypted and authenticated with the session key, as the middleware makes it).
    fn session_id(&self, req: &HttpRequest) -> Option<String> {
        let cookie = req.cookie(COOKIE_NAME)?;
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        let value = jar.private(&self.key).get(COOKIE_NAME)?;
        let key = SessionKey::try_from(value.value().to_owned()).ok()?;
        Some(row_id(&key))
    }
}

impl SessionConfig {
    fn middleware(&self) -> SessionMiddleware<DbSessionStore> {
        let ttl = CookieDuration::seconds(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX));
        SessionMiddleware::builder(self.store.clone(), self.key.clone())
            .cookie_name(COOKIE_NAME.into())
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_path("/".into())
            .cookie_secure(self.secure)
            .cookie_content_security(CookieContentSecurity::Private)
            // an absolute lifetime: the TTL counts from login and is not extended by use
            .session_lifecycle(PersistentSession::default().session_ttl(ttl))
            .build()
    }
}

/// The route table. Public routes need no login; the session middleware wraps only the
/// routes that read or write the session; protected routes take the forward-auth `Identity`.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    state: &web::Data<AuthState>,
    sessions: &SessionConfig,
) {
    let forward_auth = web::Data::new(ForwardAuth {
        key: sessions.key.clone(),
        cache: sessions.cache.clone(),
    });
    cfg.app_data(state.clone())
        .app_data(forward_auth)
        // public (the ingress routes these without forward-auth)
        .service(web::resource("/register").post(register))
        .service(web::resource("/signin").get(signin))
        .service(
            web::resource("/login")
                .wrap(sessions.middleware())
                .post(login),
        )
        .service(
            web::resource("/logout")
                .wrap(sessions.middleware())
                .get(logout)
                .post(logout),
        )
        // the forward-auth check, also public so a client can ask who it is
        .service(web::resource("/auth").get(auth))
        // protected (behind forward-auth)
        .service(web::resource("/users/me").get(me).put(update_me));
}

/// Auth's API, served by the gateway at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(register, login, logout, signin, auth, me, update_me),
    components(schemas(ProblemSchema)),
    modifiers(&SessionCookie),
    tags((name = "auth", description = "Users, sessions, and the ingress's forward-auth check"))
)]
pub struct ApiDoc;

#[derive(Deserialize, ToSchema)]
struct RegisterRequest {
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,64}$", examples("alice"))]
    login: String,
    /// Stored only as a bcrypt hash.
    #[schema(min_length = 8, max_length = 128, examples("correct horse battery"))]
    password: String,
    #[schema(
        max_length = 254,
        pattern = "^[^@\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{1,64}@[^@.\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+(\\.[^@.\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+)+$",
        examples("alice@example.com")
    )]
    email: String,
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        examples("Alice")
    )]
    first_name: Option<String>,
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        examples("Liddell")
    )]
    last_name: Option<String>,
}

/// A user as clients see it.
#[derive(Serialize, ToSchema)]
struct UserView {
    id: i64,
    login: String,
    email: String,
    first_name: String,
    last_name: String,
}

impl From<&Identity> for UserView {
    fn from(i: &Identity) -> Self {
        UserView {
            id: i.user_id,
            login: i.login.clone(),
            email: i.email.clone(),
            first_name: i.first_name.clone(),
            last_name: i.last_name.clone(),
        }
    }
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            login: u.login,
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
        }
    }
}

/// `POST /register`
#[utoipa::path(
    post,
    path = "/register",
    tag = "auth",
    summary = "Register a user",
    description = "Also opens the user's billing account.",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "The new user", body = UserView),
        (status = 409, description = "The login is taken (case-insensitively)", body = ProblemSchema, content_type = "application/problem+json"),
        JsonBodyErrors,
        PublicErrors,
    ),
)]
async fn register(
    pool: web::Data<Pool>,
    state: web::Data<AuthState>,
    Json(body): Json<RegisterRequest>,
) -> Result<HttpResponse> {
    let login = Login::parse(&body.login)?;
    let password = Password::parse(body.password)?;
    let email = Email::parse(&body.email)?;
    let first_name = Name::parse("first_name", body.first_name.as_deref().unwrap_or(""))?;
    let last_name = Name::parse("last_name", body.last_name.as_deref().unwrap_or(""))?;
    let password_hash = state.hasher.hash(password).await?;

    let user = {
        let login = login.clone();
        db::run(&pool, move |conn| {
            let at = now();
            let new = NewUser {
                login: login.as_str(),
                login_key: &login.key(),
                password_hash: &password_hash,
                email: email.as_str(),
                first_name: first_name.as_str(),
                last_name: last_name.as_str(),
                created_at: at,
                updated_at: at,
            };
            let id = crate::db::insert_user(conn, &new).map_err(|e| match DbError::from(e) {
                e if e.is_unique_violation() => AuthError::LoginTaken(login.as_str().to_string()),
                e => AuthError::Db(e),
            })?;
            crate::db::user_by_id(conn, id)?.ok_or(AuthError::UserNotFound)
        })
        .await?
    };
    state.metrics.registered();
    tracing::info!(user_id = user.id, login = %user.login, "registered");

    if let Err(e) = state.billing.open_account(user.id).await {
        // not fatal: billing opens the account on first use
        tracing::warn!(
            user_id = user.id,
            error = format!("{e:#}"),
            "could not open the billing account now"
        );
    }
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    #[schema(examples("alice"))]
    login: String,
    #[schema(examples("correct horse battery"))]
    password: String,
}

/// `"ok"`: the contract's lower-case success status for auth's answers.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
#[schema(as = AuthStatus)]
enum Done {
    Ok,
}

#[derive(Serialize, ToSchema)]
struct LoginAnswer {
    status: Done,
    id: i64,
    login: String,
}

#[derive(Serialize, ToSchema)]
struct LogoutAnswer {
    status: Done,
}

#[derive(Serialize, ToSchema)]
struct SigninAnswer {
    #[schema(examples("Please go to login and provide Login/Password"))]
    message: String,
}

/// `POST /login`: a new session (new id) on every login. After `LOGIN_MAX_FAILURES` failed
/// attempts for one login (existing or not) within the window, 429 until it closes — checked
/// before the password, so a locked login costs no bcrypt time.
#[utoipa::path(
    post,
    path = "/login",
    tag = "auth",
    summary = "Log in",
    description = "Sets the `session_id` cookie (HttpOnly, SameSite=Lax), a new session on every \
        login. A wrong password and an unknown login get the same answer.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie: session_id=…`", body = LoginAnswer,
            headers(("Set-Cookie" = String, description = "The new session cookie"))),
        (status = 401, description = "Wrong login or password", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this login; see `Retry-After`", body = ProblemSchema, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until logins are accepted again"))),
        JsonBodyErrors,
        PublicErrors,
    ),
)]
async fn login(
    pool: web::Data<Pool>,
    state: web::Data<AuthState>,
    session: Session,
    Json(body): Json<LoginRequest>,
) -> Result<HttpResponse> {
    let key = key_of(&body.login);
    let limit = state.login_limit;
    let counted = {
        let key = key.clone();
        db::run(&pool, move |conn| {
            attempts::current(conn, &key, now(), limit.window).map_err(AuthError::from)
        })
        .await?
    };
    if let Some((failures, until)) = counted.filter(|(failures, _)| *failures >= limit.max_failures)
    {
        let seconds = (until - now()).num_seconds().max(1);
        state.metrics.login(metrics::Login::Throttled);
        tracing::warn!(
            failures,
            outcome = "throttled",
            "login refused: too many failures in the window"
        );
        return Err(AuthError::TooManyAttempts(
            u64::try_from(seconds).unwrap_or(1),
        ));
    }
    let user = {
        let key = key.clone();
        db::run(&pool, move |conn| {
            crate::db::user_by_login_key(conn, &key).map_err(AuthError::from)
        })
        .await?
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    if !state.hasher.verify(body.password, hash).await? {
        db::run(&pool, move |conn| {
            attempts::record_failure(conn, &key, now(), limit.window).map_err(AuthError::from)
        })
        .await?;
        state.metrics.login(metrics::Login::Refused);
        tracing::info!(outcome = "refused", "failed login");
        return Err(AuthError::InvalidCredentials);
    }
    let user = user.expect("verify is false without a user");
    if counted.is_some() {
        db::run(&pool, move |conn| {
            attempts::clear(conn, &key).map_err(AuthError::from)
        })
        .await?;
    }
    session.renew();
    session
        .insert(USER_ID, user.id)
        .map_err(|e| anyhow::anyhow!("session insert: {e}"))?;
    state.metrics.login(metrics::Login::Ok);
    tracing::info!(user_id = user.id, outcome = "ok", "logged in");
    Ok(HttpResponse::Ok().json(LoginAnswer {
        status: Done::Ok,
        id: user.id,
        login: user.login,
    }))
}

/// `GET|POST /logout`: revokes the session server-side and clears the cookie.
#[utoipa::path(
    method(get, post),
    path = "/logout",
    tag = "auth",
    summary = "Log out",
    description = "Revokes the session server-side and clears the cookie; fine without one.",
    responses((status = 200, description = "Logged out", body = LogoutAnswer), PublicErrors),
)]
async fn logout(state: web::Data<AuthState>, session: Session) -> HttpResponse {
    if let Ok(Some(user_id)) = session.get::<i64>(USER_ID) {
        state.metrics.revoked();
        tracing::info!(user_id, "logged out");
    }
    session.purge();
    HttpResponse::Ok().json(LogoutAnswer { status: Done::Ok })
}

/// `GET /signin`: where the course's clients are sent when not logged in.
#[utoipa::path(
    get,
    path = "/signin",
    tag = "auth",
    summary = "How to log in",
    responses((status = 200, description = "A hint", body = SigninAnswer)),
)]
async fn signin() -> HttpResponse {
    HttpResponse::Ok().json(SigninAnswer {
        message: "Please go to login and provide Login/Password".into(),
    })
}

/// True for the ingress's forward-auth sub-request (ingress-nginx sets both headers).
fn is_subrequest(req: &HttpRequest) -> bool {
    req.headers().contains_key("x-original-url") || req.headers().contains_key("x-sent-from")
}

/// `GET /auth`: who the session cookie belongs to, from the session alone. 200 with the
/// identity headers (and the user JSON, except for the ingress's sub-request, which gets an
/// empty body so nginx can keep the connection alive), or 401.
///
/// From the session cache when it holds the session (no database, no thread-pool hop); else
/// one query, whose answer fills the cache ([`crate::session_cache`]).
#[utoipa::path(
    get,
    path = "/auth",
    tag = "auth",
    summary = "Who am I (the forward-auth check)",
    description = "Answers from the session cookie alone, never from identity headers in the \
        request. The ingress's sub-request gets the identity headers and an empty body.",
    responses(
        (status = 200, description = "The session's user", body = UserView, headers(
            ("X-UserId" = i64), ("X-User" = String), ("X-Email" = String),
            ("X-First-Name" = String), ("X-Last-Name" = String),
        )),
        ProtectedErrors,
    ),
    security(("session" = [])),
)]
async fn auth(
    req: HttpRequest,
    pool: web::Data<Pool>,
    check: web::Data<ForwardAuth>,
) -> Result<HttpResponse> {
    let id = check.session_id(&req).ok_or(AuthError::NotLoggedIn)?;
    let identity = match check.cache.lookup(&id, now()) {
        Lookup::Hit(identity) => identity,
        Lookup::Miss(ticket) => {
            let row = id.clone();
            let (user, expires_at) = db::run(&pool, move |conn| {
                crate::db::session::identity(conn, &row, now()).map_err(AuthError::from)
            })
            .await?
            .ok_or(AuthError::NotLoggedIn)?;
            let identity = Arc::new(Identity {
                user_id: user.id,
                login: user.login,
                email: user.email,
                first_name: user.first_name,
                last_name: user.last_name,
            });
            check.cache.fill(ticket, id, identity.clone(), expires_at);
            identity
        }
    };
    let mut res = HttpResponse::Ok();
    for header in identity.to_headers() {
        res.insert_header(header);
    }
    res.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")));
    if is_subrequest(&req) {
        Ok(res.finish())
    } else {
        Ok(res.json(UserView::from(&*identity)))
    }
}

/// `GET /users/me` (protected)
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "auth",
    summary = "My profile",
    responses((status = 200, description = "The caller", body = UserView), ProtectedErrors),
    security(("session" = [])),
)]
async fn me(pool: web::Data<Pool>, identity: Identity) -> Result<HttpResponse> {
    let user = db::run(&pool, move |conn| {
        crate::db::user_by_id(conn, identity.user_id).map_err(AuthError::from)
    })
    .await?
    .ok_or(AuthError::UserNotFound)?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

/// The fields to change; those left out stay as they are.
#[derive(Deserialize, ToSchema)]
struct ProfileRequest {
    #[schema(
        max_length = 254,
        pattern = "^[^@\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{1,64}@[^@.\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+(\\.[^@.\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+)+$",
        examples("alice@example.org")
    )]
    email: Option<String>,
    #[schema(max_length = 100, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    first_name: Option<String>,
    #[schema(max_length = 100, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    last_name: Option<String>,
}

/// `PUT /users/me` (protected): changes the fields given, keeps the others.
#[utoipa::path(
    put,
    path = "/users/me",
    tag = "auth",
    summary = "Change my profile",
    request_body = ProfileRequest,
    responses(
        (status = 200, description = "The changed profile", body = UserView),
        JsonBodyErrors,
        ProtectedErrors,
    ),
    security(("session" = [])),
)]
async fn update_me(
    pool: web::Data<Pool>,
    check: web::Data<ForwardAuth>,
    identity: Identity,
    Json(body): Json<ProfileRequest>,
) -> Result<HttpResponse> {
    let change = ProfileChange {
        email: body
            .email
            .as_deref()
            .map(Email::parse)
            .transpose()?
            .map(|e| e.as_str().to_string()),
        first_name: body
            .first_name
            .as_deref()
            .map(|n| Name::parse("first_name", n))
            .transpose()?
            .map(|n| n.as_str().to_string()),
        last_name: body
            .last_name
            .as_deref()
            .map(|n| Name::parse("last_name", n))
            .transpose()?
            .map(|n| n.as_str().to_string()),
        updated_at: Some(now()),
    };
    let user_id = identity.user_id;
    let user = db::run(&pool, move |conn| {
        crate::db::update_profile(conn, user_id, &change).map_err(AuthError::from)
    })
    .await;
    // the identity headers of every session of this user change: forget them (other replicas
    // hear it from PostgreSQL)
    check.cache.evict_user(user_id);
    let user = user?.ok_or(AuthError::UserNotFound)?;
    tracing::info!(user_id = user.id, "updated their profile");
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}
