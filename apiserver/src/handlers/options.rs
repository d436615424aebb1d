//! The options of a write request (`dryRun`, `fieldManager`, `force`), checked as
//! kube-apiserver checks its CreateOptions/UpdateOptions/PatchOptions/DeleteOptions.

use axum::http::{header, HeaderMap, Method};
use serde_json::json;

use super::request::{parse_bool, Query};
use crate::codec::strict::FieldValidation;
use crate::error::{Cause, Error};
use crate::registry::WriteOptions;
use crate::Result;

/// The only dryRun value kube-apiserver knows.
const DRY_RUN_ALL: &str = "All";

/// kube-apiserver's limit on a field manager's length.
const FIELD_MANAGER_MAX_LEN: usize = 128;

/// The options kind a verb's query is decoded into, as named in kube's 422 answers.
fn options_kind(method: &Method) -> &'static str {
    match *method {
        Method::POST => "CreateOptions",
        Method::PUT => "UpdateOptions",
        Method::PATCH => "PatchOptions",
        _ => "DeleteOptions",
    }
}

fn invalid(method: &Method, cause: Cause) -> Error {
    Error::Invalid {
        group: "meta.k8s.io".into(),
        kind: options_kind(method).into(),
        name: String::new(),
        causes: vec![cause],
    }
}

/// Whether the dryRun values (from the query, or a DeleteOptions body) ask for a dry run:
/// none means no; every value must be `All` (422 otherwise, as kube answers).
pub fn dry_run(method: &Method, values: &[String]) -> Result<bool> {
    let values: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
    if values.iter().any(|v| v.as_str() != DRY_RUN_ALL) {
        return Err(invalid(
            method,
            Cause::not_supported("dryRun", &json!(values), &[DRY_RUN_ALL]),
        ));
    }
    Ok(!values.is_empty())
}

/// The options of a write: dry run, the field manager (the `fieldManager` parameter, else the
/// User-Agent's product as kube-apiserver defaults it), force.
pub fn write_options(method: &Method, query: &Query, headers: &HeaderMap) -> Result<WriteOptions> {
    let dry = dry_run(method, query.dry_run.as_slice())?;
    let field_manager = match query.field_manager.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => {
            if m.len() > FIELD_MANAGER_MAX_LEN {
                return Err(invalid(
                    method,
                    Cause::invalid(
                        "fieldManager",
                        &json!(m),
                        &format!("must have at most {FIELD_MANAGER_MAX_LEN} bytes"),
                    ),
                ));
            }
            if let Some((i, c)) = m.char_indices().find(|(_, c)| c.is_control()) {
                let detail = format!("invalid character {:?} (at position {i})", c);
                return Err(invalid(
                    method,
                    Cause::invalid("fieldManager", &json!(m), &detail),
                ));
            }
            m.to_string()
        }
        None => user_agent_manager(headers),
    };
    let force = parse_bool("force", &query.force)?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let apply = *method == Method::PATCH
        && media.split(';').next().unwrap_or("").trim() == "application/apply-patch+yaml";
    if apply && query.field_manager.as_deref().unwrap_or("").is_empty() {
        return Err(invalid(
            method,
            Cause::required("fieldManager", "is required for apply patch"),
        ));
    }
    if !apply && force.is_some() {
        return Err(invalid(
            method,
            Cause::forbidden("force", "may not be specified for non-apply patch"),
        ));
    }
    Ok(WriteOptions {
        dry_run: dry,
        field_manager,
        force: force.unwrap_or(false),
        field_validation: FieldValidation::parse(query.field_validation.as_deref())?,
        ..WriteOptions::default()
    })
}

/// `kubectl/v1.37.0 (linux/amd64) kubernetes/abc` → `kubectl`; kube-apiserver's default
/// manager for a request without `fieldManager`, cut to the length limit.
fn user_agent_manager(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let product = ua.split('/').next().unwrap_or("").trim();
    product
        .chars()
        .filter(|c| !c.is_control())
        .take(FIELD_MANAGER_MAX_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(dry: &[&str]) -> Query {
        Query {
            dry_run: dry.first().map(|s| s.to_string()),
            ..Query::default()
        }
    }

    #[test]
    fn dry_run_accepts_only_all() {
        let h = HeaderMap::new();
        assert!(
            !write_options(&Method::POST, &query(&[]), &h)
                .unwrap()
                .dry_run
        );
        assert!(
            write_options(&Method::POST, &query(&["All"]), &h)
                .unwrap()
                .dry_run
        );
        assert!(dry_run(&Method::DELETE, &["All".into(), "All".into()]).unwrap());
        let err = write_options(&Method::PATCH, &query(&["Some"]), &h).unwrap_err();
        let (code, status) = crate::status::status_of(&err);
        assert_eq!(code, 422);
        assert_eq!(status["details"]["kind"], "PatchOptions");
        assert_eq!(status["details"]["causes"][0]["field"], "dryRun");
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueNotSupported"
        );
        assert_eq!(
            status["message"],
            r#"PatchOptions "" is invalid: dryRun: Unsupported value: ["Some"]: supported values: "All""#
        );
        assert!(dry_run(&Method::DELETE, &["All".into(), "x".into()]).is_err());
    }

    #[test]
    fn field_manager_from_query_or_user_agent() {
        let mut h = HeaderMap::new();
        h.insert(
            header::USER_AGENT,
            "kubectl/v1.37.0 (linux/amd64) kubernetes/abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            write_options(&Method::PUT, &query(&[]), &h)
                .unwrap()
                .field_manager,
            "kubectl"
        );
        let q = Query {
            field_manager: Some("kubectl-client-side-apply".into()),
            ..Query::default()
        };
        assert_eq!(
            write_options(&Method::PUT, &q, &h).unwrap().field_manager,
            "kubectl-client-side-apply"
        );
        let q = Query {
            field_manager: Some("x".repeat(129)),
            ..Query::default()
        };
        assert!(matches!(
            write_options(&Method::PUT, &q, &h),
            Err(Error::Invalid { .. })
        ));
        assert_eq!(
            write_options(&Method::PUT, &query(&[]), &HeaderMap::new())
                .unwrap()
                .field_manager,
            ""
        );
        let q = Query {
            force: Some("maybe".into()),
            ..Query::default()
        };
        assert!(matches!(
            write_options(&Method::PATCH, &q, &h),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn apply_needs_a_field_manager_and_only_apply_may_force() {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, "kubectl/v1.37.0".parse().unwrap());
        h.insert(
            header::CONTENT_TYPE,
            "application/apply-patch+yaml".parse().unwrap(),
        );
        let err = write_options(&Method::PATCH, &Query::default(), &h).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"PatchOptions "" is invalid: fieldManager: Required value: is required for apply patch"#
        );
        let q = Query {
            field_manager: Some("kubectl".into()),
            force: Some("true".into()),
            ..Query::default()
        };
        let o = write_options(&Method::PATCH, &q, &h).unwrap();
        assert!(o.force && o.field_manager == "kubectl");
        h.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json".parse().unwrap(),
        );
        let err = write_options(&Method::PATCH, &q, &h).unwrap_err();
        assert!(
            err.to_string()
                .contains("force: Forbidden: may not be specified for non-apply patch"),
            "{err}"
        );
    }
}
