//! Billing's HTTP surface. The whole route table is [`configure`].

use actix_web::{HttpResponse, web};
use common::{
    Identity, Json, Money, db,
    db::Pool,
    http::Limit,
    idempotency::{IdempotencyKey, MaybeIdempotencyKey},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    db::{ChangeOutcome, Entry, PaymentOutcome},
    domain::{Change, Payment, UserId},
    error::{BillingError, Result},
};

/// The route table: public routes (behind forward-auth) and internal ones (cluster only).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        // public, behind forward-auth: every handler takes `Identity`
        web::scope("/billing")
            .service(web::resource("/change").post(change))
            .service(web::resource("/current").get(current))
            .service(web::resource("/history").get(history)),
    )
    .service(
        // internal, never routed by the ingress: called by auth and order
        web::scope("/internal")
            .service(web::resource("/accounts").post(open_account))
            .service(web::resource("/payments").post(pay)),
    );
}

#[derive(Deserialize)]
struct ChangeRequest {
    amount: Money,
    reason: Option<String>,
}

#[derive(Serialize)]
struct EntryView {
    id: i64,
    amount: Money,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<i64>,
    /// The balance right after this entry.
    balance: Money,
    created: String,
}

impl From<Entry> for EntryView {
    fn from(e: Entry) -> Self {
        EntryView {
            id: e.id,
            amount: Money::from_minor(e.amount),
            reason: e.reason,
            order_id: e.order_id,
            balance: Money::from_minor(e.balance_after),
            created: e
                .created_at
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

fn user(identity: &Identity) -> UserId {
    UserId::parse("X-UserId", identity.user_id).expect("the Identity extractor checks user ids")
}

/// `POST /billing/change`: deposit (amount > 0) or withdraw (amount < 0).
async fn change(
    pool: web::Data<Pool>,
    identity: Identity,
    MaybeIdempotencyKey(key): MaybeIdempotencyKey,
    Json(body): Json<ChangeRequest>,
) -> Result<HttpResponse> {
    let change = Change::parse(body.amount, body.reason)?;
    let user = user(&identity);
    let requested = change.amount();
    let outcome = db::run(&pool, move |conn| {
        let key = key.as_ref().map(IdempotencyKey::as_str);
        crate::db::apply_change(conn, user, &change, key).map_err(BillingError::from)
    })
    .await?;
    match outcome {
        ChangeOutcome::KeyConflict => Err(BillingError::KeyConflict),
        ChangeOutcome::Replayed(entry) => {
            log::info!("user {} replayed balance change {}", user.get(), entry.id);
            Ok(applied(entry))
        }
        ChangeOutcome::Applied(entry) => {
            log::info!(
                "user {} balance change {} → {}",
                user.get(),
                requested,
                Money::from_minor(entry.balance_after)
            );
            Ok(applied(entry))
        }
        ChangeOutcome::InsufficientFunds { balance } => {
            log::info!(
                "user {} withdrawal of {} refused: balance {balance}",
                user.get(),
                requested.abs()
            );
            Ok(insufficient_funds(balance, requested.abs()))
        }
        ChangeOutcome::BalanceLimit { .. } => Err(BillingError::BalanceLimit),
    }
}

/// The answer to an applied change: the same for its replays.
fn applied(entry: Entry) -> HttpResponse {
    let view = EntryView::from(entry);
    HttpResponse::Ok().json(json!({
        "id": view.id,
        "amount": view.amount,
        "reason": view.reason,
        "status": "OK",
        "balance": view.balance,
    }))
}

/// The business "no" the course suites assert: HTTP 200 with `status: ERROR`.
fn insufficient_funds(balance: Money, wanted: Money) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ERROR",
        "message": format!("insufficient funds: balance {balance} < {wanted}"),
        "balance": balance,
    }))
}

/// `GET /billing/current`
async fn current(pool: web::Data<Pool>, identity: Identity) -> Result<HttpResponse> {
    let user = user(&identity);
    let balance = db::run(&pool, move |conn| {
        crate::db::balance(conn, user).map_err(BillingError::from)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "balance": balance })))
}

/// `GET /billing/history?limit=N`: newest first, 100 entries unless asked (at most 1000).
async fn history(
    pool: web::Data<Pool>,
    identity: Identity,
    Limit(limit): Limit,
) -> Result<HttpResponse> {
    let user = user(&identity);
    let entries = db::run(&pool, move |conn| {
        crate::db::history(conn, user, limit).map_err(BillingError::from)
    })
    .await?;
    let views: Vec<EntryView> = entries.into_iter().map(EntryView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Deserialize)]
struct OpenAccountRequest {
    user_id: i64,
}

/// `POST /internal/accounts` (idempotent): called by auth at registration.
async fn open_account(
    pool: web::Data<Pool>,
    Json(body): Json<OpenAccountRequest>,
) -> Result<HttpResponse> {
    let user = UserId::parse("user_id", body.user_id)?;
    let (created, balance) = db::run(&pool, move |conn| {
        let created = crate::db::open_account(conn, user)?;
        Ok::<_, BillingError>((created, crate::db::balance(conn, user)?))
    })
    .await?;
    if created {
        log::info!("opened account of user {}", user.get());
    }
    Ok(HttpResponse::Ok()
        .json(json!({ "user_id": user.get(), "balance": balance, "created": created })))
}

#[derive(Deserialize)]
struct PaymentRequest {
    order_id: i64,
    user_id: i64,
    amount: Money,
}

/// `POST /internal/payments`: charges an order at most once (see [`crate::db::pay`]).
async fn pay(pool: web::Data<Pool>, Json(body): Json<PaymentRequest>) -> Result<HttpResponse> {
    let payment = Payment::parse(body.order_id, body.user_id, body.amount)?;
    let outcome = db::run(&pool, move |conn| {
        crate::db::pay(conn, &payment).map_err(BillingError::from)
    })
    .await?;
    let (order, user, amount) = (payment.order_id, payment.user_id.get(), payment.amount);
    match outcome {
        PaymentOutcome::Charged { balance } => {
            log::info!("order {order}: charged {amount} to user {user}, balance {balance}");
            Ok(HttpResponse::Ok()
                .json(json!({ "status": "OK", "balance": balance, "replayed": false })))
        }
        PaymentOutcome::Replayed { balance } => {
            log::info!("order {order}: already paid, replaying the first outcome");
            Ok(HttpResponse::Ok()
                .json(json!({ "status": "OK", "balance": balance, "replayed": true })))
        }
        PaymentOutcome::Declined { balance } => {
            log::info!("order {order}: declined for user {user}, balance {balance} < {amount}");
            Ok(insufficient_funds(balance, amount))
        }
        PaymentOutcome::Conflict => Err(BillingError::PaymentConflict(order)),
    }
}
