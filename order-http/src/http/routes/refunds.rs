//! Giving back part or all of an order's captured payment while it stays `confirmed`.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use order_api::ErrorBody;
use order_api::orders::{OrderResponse, RefundOrderRequest};
use order_api::paths;

use super::orders::{answer_order, order_id, visible_order};
use crate::http::error::ApiError;
use crate::http::extract::{Caller, IdempotencyKey, OptionalJson, PathParam};
use crate::http::middleware::load_shed::InFlight;
use crate::http::parse::refunds::refund;
use crate::http::state::AppState;

/// Gives back part of a `confirmed` order's captured payment (or all of what is left): an
/// `amount`; `items` (an item the restaurant did not have, say: its price times the
/// quantity); both, part of the items' value; or neither (or no body), all of what is
/// left. The order stays `confirmed` and lists the
/// refund in `refunds`; its `payment` shows `partially_refunded` (or `refunded` once
/// nothing is left) and `refunded_amount`. Refunds never add up to more than was captured,
/// whatever races them. `200` with the order; `409` `payment_not_refundable` for what the
/// order decides: it is not `confirmed`, is being cancelled, has nothing captured (manual
/// capture before its capture), the amount is above what is left (the message says how
/// much is), the items are not the order's or more than are left of them, or the gateway
/// refused; `422` for a malformed body; `503` when the
/// gateway gave no definite answer: the refund stays pending, holding its amount, and a
/// retry with the same `Idempotency-Key` sends the same refund again (the order's next
/// refund, its cancellation and a periodic sweep ask about it too). With an `Idempotency-Key`, a retry
/// answers with the order as it is then (`Idempotent-Replayed: true`).
#[utoipa::path(
    post, path = paths::ORDER_REFUNDS, request_body(content = Option<RefundOrderRequest>),
    params(("id" = uuid::Uuid, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe: a retry sends the same refund. 1 to 255 visible ASCII characters.",
            min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 200, description = "Refunded", body = OrderResponse),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not refundable as asked (`current_status` says where the order is; the message, why: nothing captured, more than is left, items not the order's), the gateway refused, or a request with this Idempotency-Key is in flight", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
        (status = 422, description = "Not a UUID, an amount that is not money above 0, a malformed line or reason, or the Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "The payment gateway gave no definite answer; retry after `Retry-After` with the same Idempotency-Key", body = ErrorBody),
    )
)]
pub async fn refund_order(
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
    let (ask, reason) = refund(body.as_ref())?;
    let key = key.map(|key| caller.own(key));
    // Spawned: a refund the gateway made is recorded even if the client hangs up.
    let orders = state.orders.clone();
    answer_order(permit, async move {
        Ok::<_, ApiError>(match key {
            Some(key) => {
                let refunded = orders.refund_once(id, &ask, reason, &key).await?;
                (refunded.order, refunded.replayed)
            }
            None => (orders.refund(id, &ask, reason, None).await?, false),
        })
    })
    .await
}
