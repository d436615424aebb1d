//! `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`): the
//! identity the authenticate middleware found, from a client certificate or a bearer token.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use crate::auth::User;

/// Answers a SelfSubjectReview. The request body names nothing (kubectl sends it as protobuf),
/// so it is not read. Authenticated users are also in `system:authenticated`, as in kube.
pub async fn self_subject_review(user: Option<Extension<User>>) -> Response {
    let (name, groups) = match user {
        Some(Extension(u)) => {
            let mut groups = u.groups.clone();
            groups.push("system:authenticated".into());
            (u.name, groups)
        }
        // Only an apiserver without authentication (in-process tests) gets here without a user.
        None => ("system:anonymous".to_string(), vec!["system:unauthenticated".to_string()]),
    };
    let review = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": name, "groups": groups}},
    });
    (StatusCode::CREATED, Json(review)).into_response()
}
