//! Order's HTTP surface. The whole route table is [`configure`].

use actix_web::{HttpResponse, web};
use common::{
    Identity, Json, Money, db,
    db::Pool,
    http::Limit,
    idempotency::{IdempotencyKey, MaybeIdempotencyKey},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    clients::{BillingClient, BillingError, NotificationClient},
    db::{Created, OrderRow, Payer},
    domain::{NewOrder, Status},
    error::{OrderError, Result},
    outbox,
};

/// What the handlers share.
pub struct OrderState {
    pub billing: BillingClient,
    pub notification: NotificationClient,
    pub retry: outbox::RetryPolicy,
}

/// The route table: all public, behind forward-auth; order has no internal routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: &web::Data<OrderState>) {
    cfg.app_data(state.clone())
        .service(web::resource("/order").post(create).get(list))
        .service(web::resource("/order/{id}").get(get))
        .service(web::resource("/order/{id}/pay").put(pay));
}

#[derive(Serialize)]
struct OrderView {
    id: i64,
    user_id: i64,
    amount: Money,
    description: String,
    status: String,
    created: String,
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

#[derive(Deserialize)]
struct CreateRequest {
    amount: Money,
    description: Option<String>,
}

/// `POST /order` with an optional `Idempotency-Key`: the same key and body give the same
/// order (no new row), the same key with another body is 422.
async fn create(
    pool: web::Data<Pool>,
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
            log::info!("user {user} created order {} of {}", row.id, row.amount());
            row
        }
        Created::Replayed(row) => {
            log::info!("user {user} replayed the creation of order {}", row.id);
            row
        }
        Created::KeyConflict => return Err(OrderError::KeyConflict),
    };
    Ok(HttpResponse::Ok().json(OrderView::from(row)))
}

/// `GET /order`: the caller's orders, newest first.
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
async fn pay(
    pool: web::Data<Pool>,
    state: web::Data<OrderState>,
    identity: Identity,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    let order = find(&pool, identity.user_id, id.into_inner()).await?;
    let answer = state
        .billing
        .pay(&identity, order.id, order.amount())
        .await
        .map_err(|e| match e {
            BillingError::Unavailable(cause) => OrderError::BillingUnavailable(cause),
            BillingError::Refused(cause) => OrderError::BillingRefused(cause),
        })?;
    let to = if answer.is_paid() {
        Status::Processing
    } else {
        Status::Failed
    };

    let (user_id, email, request_id) = (
        identity.user_id,
        identity.email.clone(),
        common::request_id::current(),
    );
    let order_id = order.id;
    let (order, message) = db::run(&pool, move |conn| {
        let payer = Payer {
            user_id,
            email: &email,
            request_id: request_id.as_deref(),
        };
        crate::db::record_outcome(conn, &payer, order_id, to).map_err(OrderError::from)
    })
    .await?;
    log::info!(
        "order {order_id} paid: billing {}{}, status {}",
        answer.status,
        if answer.replayed {
            " (charged before)"
        } else {
            ""
        },
        order.status
    );

    let notification = match message {
        Some(m) if m.delivered_at.is_some() => json!({ "status": "OK", "message": m.message }),
        Some(m) => {
            let delivered = outbox::deliver(&pool, &state.notification, &m, state.retry).await;
            json!({ "status": if delivered { "OK" } else { "PENDING" }, "message": m.message })
        }
        None => json!({ "status": "NONE" }),
    };
    let billing: Value = match &answer.message {
        Some(message) if !answer.is_paid() => {
            json!({ "status": answer.status, "message": message, "balance": answer.balance })
        }
        _ => json!({ "status": answer.status, "balance": answer.balance }),
    };
    Ok(HttpResponse::Ok().json(json!({
        "id": order.id,
        "status": order.status,
        "amount": order.amount(),
        "billing": billing,
        "notification": notification,
    })))
}
