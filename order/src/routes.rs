//! Order's HTTP surface. The whole route table is [`configure`].

use actix_web::{HttpResponse, web};
use common::{
    Identity, Json, Money, db,
    db::Pool,
    http::Limit,
    idempotency::{IdempotencyKey, MaybeIdempotencyKey},
    openapi::{JsonBodyErrors, ProblemSchema, ProtectedErrors, SessionCookie, positive_money},
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::{
    clients::PaymentStatus,
    db::{Created, OrderRow},
    domain::{NewOrder, Status},
    error::{OrderError, Result},
    pay::{Delivery, PayOutcome, Payments},
};

/// The route table: all public, behind forward-auth; order has no internal routes.
pub fn configure(cfg: &mut web::ServiceConfig, payments: &web::Data<Payments>) {
    cfg.app_data(payments.clone())
        .service(web::resource("/order").post(create).get(list))
        .service(web::resource("/order/{id}").get(get))
        .service(web::resource("/order/{id}/pay").put(pay));
}

/// Order's API, served by the gateway at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(create, list, get, pay),
    components(schemas(ProblemSchema)),
    modifiers(&SessionCookie),
    tags((name = "order", description = "Orders and paying them (billing charges, notification tells)"))
)]
pub struct ApiDoc;

/// An order.
#[derive(Serialize, ToSchema)]
struct OrderView {
    id: i64,
    user_id: i64,
    amount: Money,
    description: String,
    status: Status,
    #[schema(format = DateTime)]
    created: String,
    #[schema(format = DateTime)]
    updated: String,
}

impl From<OrderRow> for OrderView {
    fn from(o: OrderRow) -> Self {
        let at = |t: chrono::NaiveDateTime| {
            t.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        OrderView {
            id: o.id,
            user_id: o.user_id,
            amount: o.amount(),
            description: o.description,
            status: o.status,
            created: at(o.created_at),
            updated: at(o.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
struct CreateRequest {
    /// What the order costs; more than zero.
    #[schema(schema_with = positive_money, examples(1000))]
    amount: Money,
    #[schema(
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$",
        examples("a book")
    )]
    description: Option<String>,
}

/// What billing said: `OK` (charged, now or by an earlier pay) or `ERROR` (declined).
#[derive(Serialize, ToSchema)]
struct BillingOutcome {
    status: PaymentStatus,
    /// Why billing declined (`ERROR` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(examples("insufficient funds: balance 20.00 < 30.00"))]
    message: Option<String>,
    /// The user's balance after the charge (or now, if declined).
    balance: Money,
}

/// Whether the user has been told: `OK` (notification stored the message), `PENDING` (it
/// will be delivered when notification is back), `NONE` (nothing new to tell).
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "UPPERCASE")]
#[schema(as = DeliveryStatus)]
enum DeliveryStatus {
    Ok,
    Pending,
    None,
}

#[derive(Serialize, ToSchema)]
struct NotificationOutcome {
    status: DeliveryStatus,
    /// The message, e.g. `order #7 Processing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(examples("order #7 Processing"))]
    message: Option<String>,
}

/// The answer to `PUT /order/{id}/pay`.
#[derive(Serialize, ToSchema)]
struct PayAnswer {
    id: i64,
    status: Status,
    amount: Money,
    billing: BillingOutcome,
    notification: NotificationOutcome,
}

/// `POST /order` with an optional `Idempotency-Key`: the same key and body give the same
/// order (no new row), the same key with another body is 422.
#[utoipa::path(
    post,
    path = "/order",
    tag = "order",
    summary = "Create an order",
    description = "A new `Pending` order. With an `Idempotency-Key`, a retry answers the same order.",
    params(MaybeIdempotencyKey),
    request_body = CreateRequest,
    responses(
        (status = 200, description = "The order (new, or the one this key created)", body = OrderView),
        (status = 422, description = "The Idempotency-Key was used with another body", body = ProblemSchema, content_type = "application/problem+json"),
        JsonBodyErrors,
        ProtectedErrors,
    ),
    security(("session" = [])),
)]
async fn create(
    pool: web::Data<Pool>,
    payments: web::Data<Payments>,
    identity: Identity,
    MaybeIdempotencyKey(key): MaybeIdempotencyKey,
    Json(body): Json<CreateRequest>,
) -> Result<HttpResponse> {
    let order = NewOrder::parse(body.amount, body.description)?;
    let user = identity.user_id;
    let created = db::run(&pool, move |conn| {
        crate::db::create(conn, user, &order, key.as_ref().map(IdempotencyKey::as_str))
            .map_err(OrderError::from)
    })
    .await?;
    let row = match created {
        Created::New(row) => {
            payments.metrics.created();
            tracing::debug!(user_id = user, order_id = row.id, amount = %row.amount(), "created order");
            row
        }
        Created::Replayed(row) => {
            tracing::debug!(user_id = user, order_id = row.id, "order creation replayed");
            row
        }
        Created::KeyConflict => return Err(OrderError::KeyConflict),
    };
    Ok(HttpResponse::Ok().json(OrderView::from(row)))
}

/// `GET /order`: the caller's orders, newest first.
#[utoipa::path(
    get,
    path = "/order",
    tag = "order",
    summary = "My orders, newest first",
    params(Limit),
    responses(
        (status = 200, description = "The caller's orders", body = [OrderView]),
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
        crate::db::list(conn, identity.user_id, limit).map_err(OrderError::from)
    })
    .await?;
    Ok(HttpResponse::Ok().json(rows.into_iter().map(OrderView::from).collect::<Vec<_>>()))
}

async fn find(pool: &Pool, user_id: i64, id: i64) -> Result<OrderRow> {
    db::run(pool, move |conn| {
        crate::db::find(conn, user_id, id).map_err(OrderError::from)
    })
    .await?
    .ok_or(OrderError::NotFound)
}

/// `GET /order/{id}`: 404 if missing or someone else's.
#[utoipa::path(
    get,
    path = "/order/{id}",
    tag = "order",
    summary = "One order",
    params(("id" = i64, Path, description = "The order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "`id` is not a 64-bit integer", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such order of the caller's", body = ProblemSchema, content_type = "application/problem+json"),
        ProtectedErrors,
    ),
    security(("session" = [])),
)]
async fn get(
    pool: web::Data<Pool>,
    identity: Identity,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    let row = find(&pool, identity.user_id, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(row)))
}

/// `PUT /order/{id}/pay`: charges the order through billing (at most once per order, however
/// often it is paid), records the outcome with its message in one transaction, and sends the
/// message; if notification is down, the answer says `PENDING` and the relay delivers later.
#[utoipa::path(
    put,
    path = "/order/{id}/pay",
    tag = "order",
    summary = "Pay an order",
    description = "Charges the order through billing, at most once per order however often it is \
        paid. Paid: `Processing` (final; paying again charges nothing and answers the paid \
        outcome). Declined: `Failed` (may be paid again). The user is told through notification; \
        if it is down, `notification.status` is `PENDING` and the message is delivered later. \
        Billing unreachable: 503, the order unchanged, safe to retry.",
    params(("id" = i64, Path, description = "The order id")),
    responses(
        (status = 200, description = "Paid (`Processing`) or declined (`Failed`)", body = PayAnswer),
        (status = 400, description = "`id` is not a 64-bit integer", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such order of the caller's", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 502, description = "Billing refused the call or answered in a way order cannot read; the order is unchanged and paying again is safe", body = ProblemSchema, content_type = "application/problem+json"),
        ProtectedErrors,
    ),
    security(("session" = [])),
)]
async fn pay(
    payments: web::Data<Payments>,
    identity: Identity,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    let outcome = payments.pay(&identity, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(PayAnswer::from(outcome)))
}

impl From<PayOutcome> for PayAnswer {
    fn from(outcome: PayOutcome) -> Self {
        let PayOutcome {
            order,
            payment,
            delivery,
        } = outcome;
        let paid = payment.is_paid();
        let (status, message) = match delivery {
            Delivery::Delivered { message } => (DeliveryStatus::Ok, Some(message)),
            Delivery::Queued { message } => (DeliveryStatus::Pending, Some(message)),
            Delivery::Nothing => (DeliveryStatus::None, None),
        };
        PayAnswer {
            id: order.id,
            amount: order.amount(),
            status: order.status,
            billing: BillingOutcome {
                status: payment.status,
                message: payment.message.filter(|_| !paid),
                balance: payment.balance,
            },
            notification: NotificationOutcome { status, message },
        }
    }
}
