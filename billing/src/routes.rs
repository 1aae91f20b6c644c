//! Billing's HTTP surface. The whole route table is [`configure`].

use actix_web::{HttpResponse, web};
use common::{
    Identity, Json, Money, db,
    db::Pool,
    http::Limit,
    idempotency::{IdempotencyKey, MaybeIdempotencyKey},
    openapi::{JsonBodyErrors, ProblemSchema, ProtectedErrors, SessionCookie, nonzero_money},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

use crate::{
    db::{ChangeOutcome, Entry, PaymentOutcome},
    domain::{Change, Payment, UserId},
    error::{BillingError, Result},
    metrics::BillingMetrics,
};

/// The route table: public routes (behind forward-auth) and internal ones (cluster only).
pub fn configure(cfg: &mut web::ServiceConfig, metrics: &web::Data<BillingMetrics>) {
    cfg.app_data(metrics.clone())
        .service(
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

/// The public part of billing's API, served by the gateway at `/openapi.json`. The internal
/// routes are left out: the ingress never routes them.
#[derive(OpenApi)]
#[openapi(
    paths(change, current, history),
    components(schemas(ProblemSchema)),
    modifiers(&SessionCookie),
    tags((name = "billing", description = "One account per user: deposits, withdrawals, balance, ledger"))
)]
pub struct ApiDoc;

#[derive(Deserialize, ToSchema)]
struct ChangeRequest {
    /// Positive deposits, negative withdraws; never zero.
    #[schema(schema_with = nonzero_money, examples(5000, -20.5))]
    amount: Money,
    /// Why; defaults to `deposit` or `withdrawal`.
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        examples("salary")
    )]
    reason: Option<String>,
}

/// `OK` (done) or `ERROR` (a business "no": nothing changed, `message` says why).
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "UPPERCASE")]
#[schema(as = ChangeStatus)]
enum Outcome {
    Ok,
    Error,
}

/// The answer to a balance change: the entry it made, or why it made none.
#[derive(Serialize, ToSchema)]
struct ChangeAnswer {
    status: Outcome,
    /// The ledger entry (`OK` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    /// The change applied (`OK` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<Money>,
    /// `OK` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Why nothing changed (`ERROR` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(examples("insufficient funds: balance 20.00 < 30.00"))]
    message: Option<String>,
    /// The balance after the change (or now, if none was made).
    balance: Money,
}

#[derive(Serialize, ToSchema)]
struct BalanceView {
    balance: Money,
}

/// A ledger entry.
#[derive(Serialize, ToSchema)]
struct EntryView {
    id: i64,
    /// Positive for money in, negative for money out.
    amount: Money,
    reason: String,
    /// The order this entry paid, for payments.
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<i64>,
    /// The balance right after this entry.
    balance: Money,
    #[schema(format = DateTime)]
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
#[utoipa::path(
    post,
    path = "/billing/change",
    tag = "billing",
    summary = "Deposit or withdraw",
    description = "A positive amount deposits, a negative one withdraws if the balance allows \
        (else `status: ERROR`, nothing changes). The balance and its ledger entry change in one \
        transaction; concurrent withdrawals never overdraw.",
    params(MaybeIdempotencyKey),
    request_body = ChangeRequest,
    responses(
        (status = 200, description = "Applied (`OK`) or refused for insufficient funds (`ERROR`)", body = ChangeAnswer),
        (status = 422, description = "The Idempotency-Key was used for another change, or the balance would pass its limit", body = ProblemSchema, content_type = "application/problem+json"),
        JsonBodyErrors,
        ProtectedErrors,
    ),
    security(("session" = [])),
)]
async fn change(
    pool: web::Data<Pool>,
    metrics: web::Data<BillingMetrics>,
    identity: Identity,
    MaybeIdempotencyKey(key): MaybeIdempotencyKey,
    Json(body): Json<ChangeRequest>,
) -> Result<HttpResponse> {
    let change = Change::parse(body.amount, body.reason)?;
    let user = user(&identity);
    let requested = change.amount();
    let timer = metrics.balance_change.clone();
    let outcome = db::run(&pool, move |conn| {
        let _timed = timer.start_timer();
        let key = key.as_ref().map(IdempotencyKey::as_str);
        crate::db::apply_change(conn, user, &change, key).map_err(BillingError::from)
    })
    .await?;
    metrics.change(requested.is_positive(), &outcome);
    match outcome {
        ChangeOutcome::KeyConflict => Err(BillingError::KeyConflict),
        ChangeOutcome::Replayed(entry) => {
            tracing::info!(
                user_id = user.get(),
                entry_id = entry.id,
                outcome = "replayed",
                "balance change replayed"
            );
            Ok(applied(entry))
        }
        ChangeOutcome::Applied(entry) => {
            tracing::info!(
                user_id = user.get(),
                amount = %requested,
                balance = %Money::from_minor(entry.balance_after),
                outcome = "applied",
                "balance changed"
            );
            Ok(applied(entry))
        }
        ChangeOutcome::InsufficientFunds { balance } => {
            tracing::info!(
                user_id = user.get(),
                amount = %requested,
                %balance,
                outcome = "refused",
                "withdrawal refused: insufficient funds"
            );
            Ok(insufficient_funds(balance, requested.abs()))
        }
        ChangeOutcome::BalanceLimit { .. } => Err(BillingError::BalanceLimit),
    }
}

/// The answer to an applied change: the same for its replays.
fn applied(entry: Entry) -> HttpResponse {
    let view = EntryView::from(entry);
    HttpResponse::Ok().json(ChangeAnswer {
        status: Outcome::Ok,
        id: Some(view.id),
        amount: Some(view.amount),
        reason: Some(view.reason),
        message: None,
        balance: view.balance,
    })
}

/// The business "no" the course suites assert: HTTP 200 with `status: ERROR`.
fn insufficient_funds(balance: Money, wanted: Money) -> HttpResponse {
    HttpResponse::Ok().json(ChangeAnswer {
        status: Outcome::Error,
        id: None,
        amount: None,
        reason: None,
        message: Some(insufficient_funds_message(balance, wanted)),
        balance,
    })
}

fn insufficient_funds_message(balance: Money, wanted: Money) -> String {
    format!("insufficient funds: balance {balance} < {wanted}")
}

/// `GET /billing/current`
#[utoipa::path(
    get,
    path = "/billing/current",
    tag = "billing",
    summary = "The balance",
    description = "0 for a user who never deposited.",
    responses((status = 200, description = "The balance", body = BalanceView), ProtectedErrors),
    security(("session" = [])),
)]
async fn current(pool: web::Data<Pool>, identity: Identity) -> Result<HttpResponse> {
    let user = user(&identity);
    let balance = db::run(&pool, move |conn| {
        crate::db::balance(conn, user).map_err(BillingError::from)
    })
    .await?;
    Ok(HttpResponse::Ok().json(BalanceView { balance }))
}

/// `GET /billing/history?limit=N`: newest first, 100 entries unless asked (at most 1000).
#[utoipa::path(
    get,
    path = "/billing/history",
    tag = "billing",
    summary = "The ledger, newest first",
    description = "The balance always equals the sum of the ledger.",
    params(Limit),
    responses(
        (status = 200, description = "Ledger entries, newest first", body = [EntryView]),
        (status = 400, description = "`limit` is not an integer from 1 to 1000", body = ProblemSchema, content_type = "application/problem+json"),
        ProtectedErrors,
    ),
    security(("session" = [])),
)]
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
    metrics: web::Data<BillingMetrics>,
    Json(body): Json<OpenAccountRequest>,
) -> Result<HttpResponse> {
    let user = UserId::parse("user_id", body.user_id)?;
    let (created, balance) = db::run(&pool, move |conn| {
        let created = crate::db::open_account(conn, user)?;
        Ok::<_, BillingError>((created, crate::db::balance(conn, user)?))
    })
    .await?;
    if created {
        metrics.account_opened();
        tracing::info!(user_id = user.get(), "opened account");
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

/// The answer to `POST /internal/payments`, which order's `clients::PaymentAnswer` reads:
/// the field names and the two `status` values are the contract between the two services.
#[derive(Serialize)]
struct PaymentAnswer {
    status: PaymentStatus,
    /// The balance after the charge, or now if declined.
    balance: Money,
    /// The order was charged by an earlier call; this one changed nothing.
    replayed: bool,
    /// Why it was declined (`Declined` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// Billing's verdict on a payment, written as the public answers write theirs.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
enum PaymentStatus {
    /// Charged, by this call or an earlier one for the same order.
    #[serde(rename = "OK")]
    Charged,
    /// Not charged: insufficient funds.
    #[serde(rename = "ERROR")]
    Declined,
}

impl PaymentAnswer {
    /// What billing answers for `outcome` of a payment of `amount`; `None` for a conflict,
    /// which is an error, not an answer.
    fn of(outcome: &PaymentOutcome, amount: Money) -> Option<Self> {
        let (status, balance, replayed, message) = match *outcome {
            PaymentOutcome::Charged { balance } => (PaymentStatus::Charged, balance, false, None),
            PaymentOutcome::Replayed { balance } => (PaymentStatus::Charged, balance, true, None),
            PaymentOutcome::Declined { balance } => (
                PaymentStatus::Declined,
                balance,
                false,
                Some(insufficient_funds_message(balance, amount)),
            ),
            PaymentOutcome::Conflict => return None,
        };
        Some(Self {
            status,
            balance,
            replayed,
            message,
        })
    }
}

/// `POST /internal/payments`: charges an order at most once (see [`crate::db::pay`]).
async fn pay(
    pool: web::Data<Pool>,
    metrics: web::Data<BillingMetrics>,
    Json(body): Json<PaymentRequest>,
) -> Result<HttpResponse> {
    let payment = Payment::parse(body.order_id, body.user_id, body.amount)?;
    let timer = metrics.charge.clone();
    let outcome = db::run(&pool, move |conn| {
        let _timed = timer.start_timer();
        crate::db::pay(conn, &payment).map_err(BillingError::from)
    })
    .await?;
    metrics.payment(&outcome);
    let (order, user, amount) = (payment.order_id, payment.user_id.get(), payment.amount);
    match outcome {
        PaymentOutcome::Charged { balance } => {
            tracing::info!(order_id = order, user_id = user, %amount, %balance, outcome = "charged", "payment");
        }
        PaymentOutcome::Replayed { .. } => {
            tracing::info!(order_id = order, user_id = user, %amount, outcome = "replayed", "payment: already paid, first outcome replayed");
        }
        PaymentOutcome::Declined { balance } => {
            tracing::info!(order_id = order, user_id = user, %amount, %balance, outcome = "declined", "payment");
        }
        PaymentOutcome::Conflict => {}
    }
    let answer = PaymentAnswer::of(&outcome, amount).ok_or(BillingError::PaymentConflict(order))?;
    Ok(HttpResponse::Ok().json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_answers_carry_the_agreed_status_texts() {
        let (amount, balance) = (Money::from_minor(3000), Money::from_minor(2000));
        let json = |outcome| serde_json::to_value(PaymentAnswer::of(&outcome, amount)).unwrap();
        assert_eq!(
            json(PaymentOutcome::Charged { balance }),
            json!({"status": "OK", "balance": 20, "replayed": false})
        );
        assert_eq!(json(PaymentOutcome::Replayed { balance })["replayed"], true);
        assert_eq!(
            json(PaymentOutcome::Declined { balance }),
            json!({
                "status": "ERROR", "balance": 20, "replayed": false,
                "message": "insufficient funds: balance 20.00 < 30.00"
            })
        );
        assert!(PaymentAnswer::of(&PaymentOutcome::Conflict, amount).is_none());
    }
}
