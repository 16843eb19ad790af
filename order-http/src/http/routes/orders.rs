//! The order routes: place, read, list and cancel.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use order_api::orders::{
    CancelOrderRequest, CreateOrderRequest, ListOrdersQuery, OrderListResponse, OrderResponse,
};
use order_api::{ErrorBody, paths};
use order_core::ports::CancelResult;
use order_core::service::{Cancelled, Placed};
use order_core::{FieldError, Order, OrderId, OrderStatus};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer_early, finish_detached};
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::extract::{
    Caller, IdempotencyKey, JsonBody, OptionalJson, PathParam, QueryParams,
};
use crate::http::headers::IDEMPOTENT_REPLAYED;
use crate::http::middleware::load_shed::InFlight;
use crate::http::parse::orders::{RawListQuery, cancel_reason, list_query, new_order_paying};
use crate::http::state::AppState;
use crate::telemetry::traces;

/// The order routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders, create_order))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(super::captures::capture_order))
        .routes(routes!(super::refunds::refund_order))
}

/// Accepts an order: validates it, stores it durably, queues its payment.
///
/// With an `Idempotency-Key` header (1 to 255 visible ASCII characters, kept 24 hours), a
/// retry of the same request returns the first order (marked `Idempotent-Replayed: true`)
/// instead of placing another; the same key with a different order is 422, and while the
/// first request is still being stored, 409.
#[utoipa::path(
    post, path = paths::ORDERS, request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe: same key, same order. 1 to 255 visible ASCII characters.",
            min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 202, description = "Accepted; payment follows", body = OrderResponse,
         headers(("Location" = String, description = "URL of the order"),
                 ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the key placed it"))),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is in flight", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, all listed; or the Idempotency-Key was used for another order", body = ErrorBody),
    )
)]
async fn create_order(
    State(state): State<AppState>,
    permit: Option<Extension<InFlight>>,
    caller: Caller,
    headers: HeaderMap,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    // The order joins the request's trace: its payment, later and elsewhere, continues it.
    let new = new_order_paying(&body, state.payment_method_required)?
        .in_trace(traces::of_request(&headers));
    caller.act_for(new.customer_id())?;
    let key = key.map(|key| caller.own(key));
    // Answered once the order is stored, while its payment job is queued on a task of its
    // own: a client that hangs up drops this handler, and the order it may already have
    // committed must still be queued for payment at once, not left to the reconciler.
    let orders = state.orders.clone();
    let (tell, told) = tokio::sync::oneshot::channel();
    let placed = answer_early(permit, told, async move {
        let tell = |placed: &Placed| drop(tell.send(placed.clone()));
        match key {
            Some(key) => drop(orders.place_once_telling(new, &key, tell).await?),
            None => drop(
                orders
                    .place_telling(new, |order| {
                        tell(&Placed {
                            order: order.clone(),
                            replayed: false,
                        });
                    })
                    .await?,
            ),
        }
        Ok(())
    })
    .await?;
    let location = paths::order(placed.order.id.as_uuid());
    let response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(convert::order(&placed.order)),
    );
    Ok(replayed(response.into_response(), placed.replayed))
}

/// One order with its payment attempts.
#[utoipa::path(
    get, path = paths::ORDER,
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    )
)]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<OrderResponse>, ApiError> {
    let order = visible_order(&state, &caller, order_id(&id)?).await?;
    Ok(Json(convert::order(&order)))
}

/// Orders, newest first, filtered by customer and status, a page at a time.
///
/// A page is asked for by number (`page`, up to 1,000) or after the page before it
/// (`cursor`: that page's `next_cursor`, also sent as `Link: <...>; rel="next"`), which
/// reaches any depth at the cost of the first page.
#[utoipa::path(
    get, path = paths::ORDERS, params(ListOrdersQuery),
    responses(
        (status = 200, body = OrderListResponse, headers(
            ("Link" = String, description = "`<the next page>; rel=\"next\"`, unless this is the last page"),
        )),
        (status = 400, description = "Unreadable query string", body = ErrorBody),
        (status = 422, description = "Bad parameters, all listed", body = ErrorBody),
    )
)]
async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<RawListQuery>,
) -> Result<Response, ApiError> {
    let (mut filter, page) = list_query(query)?;
    // A key bound to a customer lists that customer's orders only.
    filter.customer_id = caller.narrow(filter.customer_id)?;
    let found = state.orders.list(&filter, page).await?;
    let next_cursor = found.next.map(|c| c.to_string());
    let link = next_cursor.as_ref().and_then(|cursor| {
        let next = ListOrdersQuery {
            customer_id: filter.customer_id.as_ref().map(ToString::to_string),
            status: filter.status.map(convert::status),
            page: None,
            page_size: Some(page.size.get()),
            cursor: Some(cursor.clone()),
        };
        let query = serde_urlencoded::to_string(&next).ok()?;
        HeaderValue::from_str(&format!("<{}?{query}>; rel=\"next\"", paths::ORDERS)).ok()
    });
    let body = Json(OrderListResponse {
        orders: found.orders.iter().map(convert::order).collect(),
        total: found.total,
        page: page.number().get(),
        page_size: page.size.get(),
        next_cursor,
    });
    Ok(match link {
        Some(link) => ([(header::LINK, link)], body).into_response(),
        None => body.into_response(),
    })
}

/// Cancels an order.
///
/// A `pending` order is cancelled at once (`200`) and never charged. Once payment started
/// (or the order is `confirmed`), the cancellation is recorded and the order becomes
/// `cancelling` (`202`): a worker refunds what was captured, or voids the charge if
/// nothing was, and the order then ends `cancelled` with its refund shown. Cancelling a
/// `cancelling` or `cancelled` order again answers with it as it is (`202` or `200`); a
/// `payment_failed` order cannot be cancelled (`409`). The body is optional. With an
/// `Idempotency-Key`, a retry answers with the order as it is then (marked
/// `Idempotent-Replayed: true`); the key reused for another request is `422`.
#[utoipa::path(
    post, path = paths::ORDER_CANCEL, request_body(content = Option<CancelOrderRequest>),
    params(("id" = uuid::Uuid, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe. 1 to 255 visible ASCII characters.",
            min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 200, description = "Cancelled", body = OrderResponse),
        (status = 202, description = "Cancelling: the payment is being refunded", body = OrderResponse),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not cancellable (`current_status` says why), or a request with this Idempotency-Key is in flight", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
        (status = 422, description = "Not a UUID, an unknown reason, or the Idempotency-Key was used for another request", body = ErrorBody),
    )
)]
async fn cancel_order(
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
    let reason = cancel_reason(body.as_ref())?;
    let key = key.map(|key| caller.own(key));
    // Spawned for the same reason as placing: a recorded cancellation is queued for its
    // refund even if the client hangs up.
    let orders = state.orders.clone();
    let (order, was_replayed) = finish_detached(permit, async move {
        Ok::<_, ApiError>(match key {
            Some(key) => match orders.cancel_once(id, reason, &key).await? {
                Cancelled::Now(result) => (cancelled(result)?, false),
                Cancelled::Replayed(order) => (order, true),
            },
            None => (cancelled(orders.cancel(id, reason).await?)?, false),
        })
    })
    .await?;
    let status = match order.status {
        OrderStatus::Cancelled => StatusCode::OK,
        OrderStatus::Cancelling => StatusCode::ACCEPTED,
        status => return Err(ApiError::NotCancellable { id, status }),
    };
    let response = (status, Json(convert::order(&order))).into_response();
    Ok(replayed(response, was_replayed))
}

/// The order a cancellation left, or why it refused.
fn cancelled(result: CancelResult) -> Result<Order, ApiError> {
    match result {
        CancelResult::Cancelled(order)
        | CancelResult::Cancelling(order)
        | CancelResult::Unchanged(order) => Ok(order),
        CancelResult::NotCancellable(order) => Err(ApiError::NotCancellable {
            id: order.id,
            status: order.status,
        }),
    }
}

/// The order id of a path, or a 422 naming `order_id`.
pub(super) fn order_id(id: &str) -> Result<OrderId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::Validation(vec![FieldError::new("order_id", e)]))
}

/// The order `id`, if it exists and the caller may see it: another customer's order is
/// "not found" to a key bound to a customer, so its existence is not given away.
pub(super) async fn visible_order(
    state: &AppState,
    caller: &Caller,
    id: OrderId,
) -> Result<Order, ApiError> {
    state
        .orders
        .get(id)
        .await?
        .filter(|order| caller.may_act_for(&order.customer_id))
        .ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))
}

/// `200` with the order `work` leaves, marked as a replay when `work` says its answer is
/// one. `work` runs on a task of its own: what it does at the gateway is recorded even if
/// the client hangs up.
pub(super) async fn answer_order(
    permit: Option<Extension<InFlight>>,
    work: impl Future<Output = Result<(Order, bool), ApiError>> + Send + 'static,
) -> Result<Response, ApiError> {
    let (order, was_replayed) = finish_detached(permit, work).await?;
    let response = (StatusCode::OK, Json(convert::order(&order))).into_response();
    Ok(replayed(response, was_replayed))
}

/// `response`, marked `Idempotent-Replayed: true` if an earlier request made it.
pub(super) fn replayed(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
