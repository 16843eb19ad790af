//! Capturing an order's authorized payment (manual capture).

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use order_api::ErrorBody;
use order_api::orders::{CaptureOrderRequest, OrderResponse};
use order_api::paths;

use super::orders::{answer_order, order_id, visible_order};
use crate::http::error::ApiError;
use crate::http::extract::{Caller, IdempotencyKey, OptionalJson, PathParam};
use crate::http::middleware::load_shed::InFlight;
use crate::http::parse::orders::capture_amount;
use crate::http::state::AppState;

/// Captures a `confirmed` order's authorized payment (`PAYMENT_CAPTURE=manual`): the
/// whole authorization, or `amount` of it (an item the restaurant did not have is not
/// charged). Once per order: `200` with the order and its `payment`; `409`
/// `payment_not_capturable` when nothing is authorized (automatic capture, not confirmed
/// yet, being cancelled), when it was captured already, or when the gateway refuses (the
/// authorization was voided); `422` for an amount above the authorized one; `503` when
/// the gateway gave no definite answer: ask again with the same amount, which resumes the
/// same capture. With an `Idempotency-Key`, a retry answers with the order as it is then
/// (`Idempotent-Replayed: true`).
#[utoipa::path(
    post, path = paths::ORDER_CAPTURE, request_body(content = Option<CaptureOrderRequest>),
    params(("id" = uuid::Uuid, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe. 1 to 255 visible ASCII characters.",
            min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 200, description = "Captured", body = OrderResponse),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Nothing to capture (`current_status` says where the order is), or a request with this Idempotency-Key is in flight", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
        (status = 422, description = "Not a UUID, an amount that is not money or above the authorized amount, or the Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "The payment gateway gave no definite answer; retry after `Retry-After`", body = ErrorBody),
    )
)]
pub async fn capture_order(
    State(state): State<AppState>,
    permit: Option<Extension<InFlight>>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    IdempotencyKey(key): IdempotencyKey,
    OptionalJson(body): OptionalJson,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    if caller.customer().is_some() {
        visible_order(&state, &caller, id).await?;
    }
    let amount = capture_amount(body.as_ref())?;
    let key = key.map(|key| caller.own(key));
    // Spawned: a capture the gateway made is recorded even if the client hangs up.
    let orders = state.orders.clone();
    answer_order(permit, async move {
        Ok::<_, ApiError>(match key {
            Some(key) => {
                let captured = orders.capture_once(id, amount, &key).await?;
                (captured.order, captured.replayed)
            }
            None => (orders.capture(id, amount).await?, false),
        })
    })
    .await
}
