//! The one place where errors become Kubernetes `Status` objects (and HTTP codes).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::error::Error;

/// HTTP code and `reason` for an error. An unmapped storage-level error is a bug: 500.
fn code_and_reason(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::NotFound { .. } | Error::UnknownPath => (StatusCode::NOT_FOUND, "NotFound"),
        Error::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
        Error::Conflict { .. } | Error::ApplyConflict { .. } => (StatusCode::CONFLICT, "Conflict"),
        Error::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
        Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        Error::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        Error::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        Error::Expired(_) => (StatusCode::GONE, "Expired"),
        Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
        Error::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        Error::Timeout(_) | Error::TooLargeResourceVersion { .. } => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
        Error::Internal(_) | Error::KeyNotFound(_) | Error::KeyExists(_) | Error::PreconditionFailed(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
        }
    }
}

/// The `Status` object for an error, and its HTTP code.
pub fn status_of(e: &Error) -> (StatusCode, Value) {
    let (code, reason) = code_and_reason(e);
    if code == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "internal error reached the API edge (a bug)");
    }
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": e.to_string(),
        "reason": reason,
        "code": code.as_u16(),
    });
    let details = match e {
        Error::NotFound { resource, name }
        | Error::AlreadyExists { resource, name }
        | Error::Conflict { resource, name, .. } => {
            Some(json!({"name": name, "group": resource.group, "kind": resource.resource}))
        }
        Error::Invalid { group, kind, name, causes } => {
            Some(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
        }
        Error::ApplyConflict { causes, .. } => Some(json!({"causes": causes})),
        Error::Unavailable(_) | Error::Timeout(_) => Some(json!({"retryAfterSeconds": 1})),
        // client-go's IsTooLargeResourceVersion looks for this cause.
        Error::TooLargeResourceVersion { .. } => Some(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        })),
        _ => None,
    };
    if let Some(mut d) = details {
        // kube-apiserver omits an empty group.
        if d.get("group").and_then(Value::as_str) == Some("") {
            d.as_object_mut().map(|m| m.remove("group"));
        }
        status["details"] = d;
    }
    (code, status)
}

/// A successful `Status` (DELETE answers it when the object is gone).
pub fn success(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (code, body) = status_of(&self);
        let mut resp = (code, axum::Json(body)).into_response();
        if code == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Cause, GroupResource};

    #[test]
    fn every_kind_of_error_has_its_code() {
        let pods = GroupResource { group: String::new(), resource: "pods".into() };
        let deps = GroupResource { group: "apps".into(), resource: "deployments".into() };
        let (c, s) = status_of(&Error::NotFound { resource: pods.clone(), name: "p".into() });
        assert_eq!(c, 404);
        assert_eq!(s["message"], "pods \"p\" not found");
        assert_eq!(s["details"], json!({"name": "p", "kind": "pods"}));
        let (c, s) = status_of(&Error::AlreadyExists { resource: deps.clone(), name: "d".into() });
        assert_eq!((c.as_u16(), s["reason"].as_str()), (409, Some("AlreadyExists")));
        assert_eq!(s["message"], "deployments.apps \"d\" already exists");
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(status_of(&Error::modified(&pods, "p")).0, 409);
        let invalid = Error::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "p".into(),
            causes: vec![Cause::required("spec.containers", "")],
        };
        let (c, s) = status_of(&invalid);
        assert_eq!(c, 422);
        assert_eq!(s["message"], "Pod \"p\" is invalid: spec.containers: Required value");
        assert_eq!(s["details"]["causes"][0]["field"], "spec.containers");
        assert_eq!(status_of(&Error::Expired("old".into())).0, 410);
        assert_eq!(status_of(&Error::TooLarge(3)).0, 413);
        assert_eq!(status_of(&Error::UnsupportedMediaType("x".into())).0, 415);
        assert_eq!(status_of(&Error::BadRequest("x".into())).0, 400);
        assert_eq!(status_of(&Error::Unauthorized).0, 401);
        assert_eq!(status_of(&Error::Unavailable("x".into())).1["details"]["retryAfterSeconds"], 1);
        assert_eq!(status_of(&Error::Timeout("x".into())).0, 504);
        assert_eq!(status_of(&Error::KeyNotFound("k".into())).0, 500);
    }
}
