//! Auth's HTTP surface. The whole route table is [`configure`].

use actix_session::{
    Session, SessionMiddleware,
    config::{CookieContentSecurity, PersistentSession},
};
use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Key, SameSite, time::Duration as CookieDuration},
    http::header::{CACHE_CONTROL, HeaderValue},
    web,
};
use common::{
    Identity, Json,
    db::{self, DbError, Pool},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    billing_client::BillingClient,
    db::{NewUser, ProfileChange, User, attempts, now},
    domain::{Email, Login, Name, Password, key_of},
    error::{AuthError, Result},
    password::Hasher,
    session_store::DbSessionStore,
};

/// The name of the session cookie (api-contract.md).
pub const COOKIE_NAME: &str = "session_id";
/// The session entry holding the logged-in user's id.
const USER_ID: &str = "user_id";

/// What the handlers share.
pub struct AuthState {
    pub hasher: Hasher,
    pub billing: BillingClient,
    pub login_limit: LoginLimit,
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
    pub key: Key,
    pub ttl: std::time::Duration,
    pub secure: bool,
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
    cfg.app_data(state.clone())
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
        .service(web::resource("/auth").wrap(sessions.middleware()).get(auth))
        // protected (behind forward-auth)
        .service(web::resource("/users/me").get(me).put(update_me));
}

#[derive(Deserialize)]
struct RegisterRequest {
    login: String,
    password: String,
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// A user as clients see it.
#[derive(Serialize)]
struct UserView {
    id: i64,
    login: String,
    email: String,
    first_name: String,
    last_name: String,
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
    log::info!("registered user {} ({})", user.id, user.login);

    if let Err(e) = state.billing.open_account(user.id).await {
        // not fatal: billing opens the account on first use
        log::warn!(
            "could not open the billing account of user {} now: {e:#}",
            user.id
        );
    }
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

#[derive(Deserialize)]
struct LoginRequest {
    login: String,
    password: String,
}

/// `POST /login`: a new session (new id) on every login. After `LOGIN_MAX_FAILURES` failed
/// attempts for one login (existing or not) within the window, 429 until it closes — checked
/// before the password, so a locked login costs no bcrypt time.
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
        log::warn!("login refused: {failures} failures in the window for one login");
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
        log::info!("failed login");
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
    log::info!("user {} logged in", user.id);
    Ok(HttpResponse::Ok().json(json!({ "status": "ok", "id": user.id, "login": user.login })))
}

/// `GET|POST /logout`: revokes the session server-side and clears the cookie.
async fn logout(session: Session) -> HttpResponse {
    if let Ok(Some(user_id)) = session.get::<i64>(USER_ID) {
        log::info!("user {user_id} logged out");
    }
    session.purge();
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /signin`: where the course's clients are sent when not logged in.
async fn signin() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "message": "Please go to login and provide Login/Password" }))
}

/// True for the ingress's forward-auth sub-request (ingress-nginx sets both headers).
fn is_subrequest(req: &HttpRequest) -> bool {
    req.headers().contains_key("x-original-url") || req.headers().contains_key("x-sent-from")
}

/// `GET /auth`: who the session cookie belongs to, from the session alone. 200 with the
/// identity headers (and the user JSON, except for the ingress's sub-request, which gets an
/// empty body so nginx can keep the connection alive), or 401.
async fn auth(req: HttpRequest, pool: web::Data<Pool>, session: Session) -> Result<HttpResponse> {
    let user_id = session
        .get::<i64>(USER_ID)
        .ok()
        .flatten()
        .ok_or(AuthError::NotLoggedIn)?;
    let Some(user) = db::run(&pool, move |conn| {
        crate::db::user_by_id(conn, user_id).map_err(AuthError::from)
    })
    .await?
    else {
        session.purge();
        return Err(AuthError::NotLoggedIn);
    };
    let identity = Identity {
        user_id: user.id,
        login: user.login.clone(),
        email: user.email.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
    };
    let mut res = HttpResponse::Ok();
    for header in identity.to_headers() {
        res.insert_header(header);
    }
    res.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")));
    if is_subrequest(&req) {
        Ok(res.finish())
    } else {
        Ok(res.json(UserView::from(user)))
    }
}

/// `GET /users/me` (protected)
async fn me(pool: web::Data<Pool>, identity: Identity) -> Result<HttpResponse> {
    let user = db::run(&pool, move |conn| {
        crate::db::user_by_id(conn, identity.user_id).map_err(AuthError::from)
    })
    .await?
    .ok_or(AuthError::UserNotFound)?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

#[derive(Deserialize)]
struct ProfileRequest {
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// `PUT /users/me` (protected): changes the fields given, keeps the others.
async fn update_me(
    pool: web::Data<Pool>,
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
    let user = db::run(&pool, move |conn| {
        crate::db::update_profile(conn, identity.user_id, &change).map_err(AuthError::from)
    })
    .await?
    .ok_or(AuthError::UserNotFound)?;
    log::info!("user {} updated their profile", user.id);
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}
