//! Notification's HTTP surface. The whole route table is [`configure`].

use actix_web::{HttpResponse, web};
use common::{
    Identity, Json, db,
    db::Pool,
    http::Limit,
    openapi::{ProblemSchema, ProtectedErrors, SessionCookie},
    problem::Problem,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

use crate::{
    db::{NewNotification, Notification},
    error::{NotificationError, Result},
    metrics::NotificationMetrics,
};

pub fn configure(cfg: &mut web::ServiceConfig, metrics: &web::Data<NotificationMetrics>) {
    cfg.app_data(metrics.clone())
        // public, behind forward-auth
        .service(web::resource("/notification").get(list))
        // internal, never routed by the ingress: called by order
        .service(web::resource("/internal/notifications").post(create));
}

/// The public part of notification's API, served by the gateway at `/openapi.json`. The
/// internal route is left out: the ingress never routes it.
#[derive(OpenApi)]
#[openapi(
    paths(list),
    components(schemas(ProblemSchema)),
    modifiers(&SessionCookie),
    tags((name = "notification", description = "The messages users were sent about their orders"))
)]
pub struct ApiDoc;

/// A message sent to a user.
#[derive(Serialize, ToSchema)]
struct NotificationView {
    id: i64,
    order_id: i64,
    /// `order #<id> Processing` or `order #<id> Failed`.
    #[schema(examples("order #7 Processing"))]
    message: String,
    email: String,
    #[schema(format = DateTime)]
    created: String,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        NotificationView {
            id: n.id,
            order_id: n.order_id,
            message: n.message,
            email: n.email,
            created: n
                .created_at
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// `GET /notification?limit=N`: the caller's messages, newest first.
#[utoipa::path(
    get,
    path = "/notification",
    tag = "notification",
    summary = "My messages, newest first",
    params(Limit),
    responses(
        (status = 200, description = "The caller's messages", body = [NotificationView]),
        (status = 400, description = "`limit` is not an integer from 1 to 1000", body = ProblemSchema, content_type = "application/problem+json"),
        ProtectedErrors,
    ),
    security(("session" = [])),
)]
async fn list(
    pool: web::Data<Pool>,
    identity: Identity,
    Limit(limit): Limit,
) -> Result<HttpResponse> {
    let rows = db::run(&pool, move |conn| {
        crate::db::list(conn, identity.user_id, limit).map_err(NotificationError::from)
    })
    .await?;
    let views: Vec<NotificationView> = rows.into_iter().map(NotificationView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Deserialize)]
struct CreateRequest {
    user_id: i64,
    email: String,
    order_id: i64,
    message: String,
    key: String,
}

impl CreateRequest {
    fn parse(self) -> std::result::Result<NewNotification, Problem> {
        let text = |field: &str, value: String, max: usize| {
            let value = value.trim().to_string();
            if value.is_empty()
                || value.chars().count() > max
                || value.chars().any(char::is_control)
            {
                Err(Problem::invalid_field(
                    field,
                    format!("must be 1 to {max} printable characters"),
                ))
            } else {
                Ok(value)
            }
        };
        if self.user_id <= 0 {
            return Err(Problem::invalid_field(
                "user_id",
                "must be a positive integer",
            ));
        }
        if self.order_id <= 0 {
            return Err(Problem::invalid_field(
                "order_id",
                "must be a positive integer",
            ));
        }
        Ok(NewNotification {
            key: text("key", self.key, 200)?,
            user_id: self.user_id,
            // an email may be unknown (empty) but never garbage
            email: if self.email.trim().is_empty() {
                String::new()
            } else {
                text("email", self.email, 254)?
            },
            order_id: self.order_id,
            message: text("message", self.message, 500)?,
        })
    }
}

/// `POST /internal/notifications`: stores a message once per `key`. Sending the same message
/// again answers the stored one (`"created": false`); reusing a key for another message is 409.
async fn create(
    pool: web::Data<Pool>,
    metrics: web::Data<NotificationMetrics>,
    Json(body): Json<CreateRequest>,
) -> Result<HttpResponse> {
    let new = body.parse()?;
    let (stored, created) = {
        let new = new.clone();
        db::run(&pool, move |conn| {
            crate::db::store(conn, &new).map_err(NotificationError::from)
        })
        .await?
    };
    let same = stored.user_id == new.user_id
        && stored.order_id == new.order_id
        && stored.message == new.message;
    if !same {
        metrics.received("key_reused");
        return Err(NotificationError::KeyReused(new.key));
    }
    metrics.received(if created { "stored" } else { "replayed" });
    if created {
        // the order service logs the status change this announces; this is its echo
        tracing::debug!(
            user_id = stored.user_id,
            order_id = stored.order_id,
            text = %stored.message,
            outcome = "stored",
            "notification stored"
        );
    } else {
        tracing::debug!(
            user_id = stored.user_id,
            order_id = stored.order_id,
            key = %stored.idempotency_key,
            outcome = "replayed",
            "notification was stored before"
        );
    }
    let mut body = serde_json::to_value(NotificationView::from(stored)).expect("serializable");
    body["created"] = json!(created);
    Ok(HttpResponse::Ok().json(body))
}
