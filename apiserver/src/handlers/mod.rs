//! Thin axum handlers: routing, authentication, discovery, and the resource endpoints.

mod discovery;
mod openapi;
mod options;
mod request;
mod resource;
mod table;
mod whoami;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use crate::auth::{CertificateUser, TokenAuth, User};
use crate::error::Error;
use crate::registry::Registry;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The generic registry.
    pub registry: Arc<Registry>,
    /// Bearer tokens; `None` serves without authentication (in-process tests only).
    pub auth: Option<Arc<TokenAuth>>,
}

/// Paths anonymous clients may reach (load balancers and probes have no token).
fn is_public(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz"].iter().any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Who sent the request: the verified client certificate's user, else the bearer token's.
/// The `User` goes into the request's extensions (for later code) and the response's (for the
/// access log); without either credential a non-public path is 401.
async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(auth) = &st.auth else { return next.run(req).await };
    let from_cert = req.extensions().get::<CertificateUser>().map(|c| c.0.clone());
    let user = from_cert.or_else(|| {
        let token = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)?;
        auth.user(token).cloned()
    });
    match user {
        Some(user) => {
            req.extensions_mut().insert(user.clone());
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(user);
            resp
        }
        None if is_public(req.uri().path()) => next.run(req).await,
        None => Error::Unauthorized.into_response(),
    }
}

/// One structured line per request (target `access`): method, path and query, code, and
/// the time to the response head (a watch's stream runs on after it).
async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let (verb, group, resource) = request::verb_and_resource(&method, req.uri());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let took = started.elapsed();
    let code = resp.status().as_u16();
    crate::metrics::global().observe_request(verb, &group, &resource, code, took);
    let user = resp.extensions().get::<User>().map(|u| u.name.clone()).unwrap_or_default();
    tracing::info!(target: "access", %method, uri, verb, resource, code, user, ms = took.as_millis() as u64);
    resp
}

async fn metrics() -> Response {
    let text = crate::metrics::global().render();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn not_found() -> Response {
    Error::UnknownPath.into_response()
}

/// The whole API as one `Router` (served over TLS by `server.rs`, or called directly in tests).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(discovery::healthz))
        .route("/livez", get(discovery::healthz))
        .route("/readyz", get(discovery::readyz))
        .route("/version", get(discovery::version))
        .route("/metrics", get(metrics))
        .route("/api", get(discovery::api_versions))
        .route("/apis", get(discovery::api_groups))
        .route("/apis/{group}", get(discovery::api_group))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::root))
        .route("/openapi/v3/{*rest}", get(openapi::group_version))
        .route("/apis/authentication.k8s.io/v1/selfsubjectreviews", post(whoami::self_subject_review))
        .route("/api/{*rest}", any(resource::handle))
        .route("/apis/{group}/{*rest}", any(resource::handle))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(axum::middleware::from_fn(access_log))
        .with_state(state)
}
