//! The pieces of the OpenAPI description that every service's part shares: the `Money` and
//! `Problem` schemas, the session-cookie security scheme, the `Idempotency-Key` and `?limit=`
//! parameters, and the error answers the shared mechanics give (bad JSON, not logged in,
//! database down).
//!
//! Each service describes its own public routes with `#[utoipa::path]` on the handlers and a
//! `#[derive(OpenApi)]` listing them; the gateway serves all four merged at `/openapi.json`.

use std::collections::BTreeMap;

use utoipa::{
    IntoParams, IntoResponses, Modify, PartialSchema, ToSchema,
    openapi::{
        self, ContentBuilder, ObjectBuilder, OneOfBuilder, Ref, RefOr, Required, ResponseBuilder,
        Type,
        path::{Parameter, ParameterBuilder, ParameterIn},
        response::Response,
        schema::Schema,
        security::{ApiKey, ApiKeyValue, SecurityScheme},
    },
};

use crate::{
    Money,
    http::Limit,
    idempotency::{IdempotencyKey, MaybeIdempotencyKey},
};

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The name of the security scheme protected operations require.
pub const SESSION: &str = "session";

/// A JSON number with at most 2 decimal places from `min` to `max` (or past `exclusive_min`).
fn money(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .description(Some(description))
        .multiple_of(Some(0.01))
        .examples([serde_json::json!(5000), serde_json::json!(2000.5)])
}

/// Answers carry amounts (at most ±1e9 per request) and balances (up to 1e12).
impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        money(
            "An amount in currency units with at most 2 decimal places, stored exactly as \
             integer minor units (never a float).",
        )
        .into()
    }
}

/// For a `Money` field that must be more than zero: `#[schema(schema_with = positive_money)]`.
pub fn positive_money() -> RefOr<Schema> {
    money("An amount of money, more than zero, with at most 2 decimal places.")
        .exclusive_minimum(Some(0))
        .maximum(Some(1_000_000_000))
        .into()
}

/// For a `Money` field that must not be zero: `#[schema(schema_with = nonzero_money)]`.
pub fn nonzero_money() -> RefOr<Schema> {
    let side = |positive: bool| {
        let half = ObjectBuilder::new()
            .schema_type(Type::Number)
            .multiple_of(Some(0.01));
        if positive {
            half.exclusive_minimum(Some(0)).maximum(Some(1_000_000_000))
        } else {
            half.minimum(Some(-1_000_000_000))
                .exclusive_maximum(Some(0))
        }
    };
    OneOfBuilder::new()
        .description(Some(
            "An amount of money, not zero, with at most 2 decimal places.",
        ))
        .item(side(true))
        .item(side(false))
        .into()
}

impl ToSchema for Money {}

/// An RFC 9457 problem: what every error answer carries.
#[derive(ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)] // describes the wire shape of `crate::problem::Problem`; never built
pub struct ProblemSchema {
    /// Always `about:blank`: the status code and title say what happened.
    #[schema(examples("about:blank"))]
    r#type: String,
    /// The reason phrase of the status.
    #[schema(examples("Bad Request"))]
    title: String,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599, examples(400))]
    status: u16,
    /// What went wrong, for a human.
    #[schema(examples("amount: must be a number with at most 2 decimal places"))]
    detail: Option<String>,
    /// The request field at fault, when there is one.
    #[schema(examples("amount"))]
    field: Option<String>,
}

/// An error answer with `description`, carrying a [`Problem`](ProblemSchema) body.
pub fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn answers<const N: usize>(list: [(u16, &str); N]) -> BTreeMap<String, RefOr<Response>> {
    list.into_iter()
        .map(|(status, description)| (status.to_string(), problem(description).into()))
        .collect()
}

/// What any operation with a JSON body may answer besides its own outcomes.
pub struct JsonBodyErrors;

impl IntoResponses for JsonBodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers([
            (
                400,
                "Malformed JSON, or a field that is missing or invalid (named in `field`)",
            ),
            (413, "The body is larger than the service accepts"),
            (415, "The body is not `application/json`"),
        ])
    }
}

/// What any protected operation may answer besides its own outcomes.
pub struct ProtectedErrors;

impl IntoResponses for ProtectedErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers([
            (401, "Not logged in: no valid session cookie"),
            (
                503,
                "A dependency (the database, auth, billing) is unavailable; safe to retry",
            ),
        ])
    }
}

/// What a public operation that uses the database may answer besides its own outcomes.
pub struct PublicErrors;

impl IntoResponses for PublicErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers([(503, "The database is unavailable; safe to retry")])
    }
}

impl IntoParams for Limit {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("How many entries, newest first (default 100)"))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .maximum(Some(Limit::MAX))
                        .default(Some(serde_json::json!(Limit::DEFAULT))),
                ))
                .build(),
        ]
    }
}

impl IntoParams for MaybeIdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name(IdempotencyKey::HEADER)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes a retry safe: the same key with the same body answers the first \
                     outcome and does nothing again; the same key with another body is 422",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[!-~]+$")),
                ))
                .build(),
        ]
    }
}

/// Adds the `session` cookie security scheme (auth's `session_id`, set by `POST /login`).
pub struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                SESSION,
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    "session_id",
                    "The session cookie `POST /login` sets; the ingress checks it with auth",
                ))),
            );
    }
}

/// Registers the schemas this module defines (use with `#[openapi(components(schemas(…)))]`
/// or call it on a merged document).
pub fn add_shared_schemas(openapi: &mut openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".into(), ProblemSchema::schema());
    components.schemas.insert("Money".into(), Money::schema());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_schemas_describe_the_wire_shapes() {
        let mut doc = openapi::OpenApi::default();
        add_shared_schemas(&mut doc);
        let json = serde_json::to_value(&doc).unwrap();
        let problem = &json["components"]["schemas"]["Problem"];
        assert_eq!(
            problem["required"],
            serde_json::json!(["type", "title", "status"])
        );
        assert_eq!(json["components"]["schemas"]["Money"]["type"], "number");
    }
}
