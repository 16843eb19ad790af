//! The API's documentation, served whole from the binary (no CDN): Swagger UI at `/docs`,
//! ReDoc at `/redoc`, and the OpenAPI document they render at `/openapi.json`.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use order_api::paths;
use utoipa_swagger_ui::SwaggerUi;

/// The vendored ReDoc bundle: the page works with no network at all.
const REDOC_JS: &str = include_str!("../../../assets/redoc.standalone.js");
const REDOC_JS_PATH: &str = "/redoc/redoc.standalone.js";

/// The documentation routes, serving `document`.
pub fn router(document: utoipa::openapi::OpenApi) -> Router {
    Router::new()
        .merge(SwaggerUi::new(paths::DOCS).url(paths::OPENAPI, document))
        .route(paths::REDOC, get(redoc))
        .route(REDOC_JS_PATH, get(redoc_js))
}

/// ReDoc, rendering `/openapi.json` with the bundle this binary serves.
async fn redoc() -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Order service API</title>\n<style>body {{ margin: 0; padding: 0; }}</style>\n\
         </head>\n<body>\n<div id=\"redoc-container\"></div>\n\
         <script src=\"{REDOC_JS_PATH}\"></script>\n\
         <script>Redoc.init(\"{openapi}\", {{}}, document.getElementById(\"redoc-container\"));</script>\n\
         </body>\n</html>\n",
        openapi = paths::OPENAPI,
    ))
}

async fn redoc_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        REDOC_JS,
    )
}
