//! The crate's one error type. Storage, registry and handlers all return it; `status.rs` turns
//! it into a Kubernetes `Status` at the edge.

use serde::Serialize;

/// A group and resource, printed as kube-apiserver prints them: `pods`, `deployments.apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResource {
    /// API group ("" for the core group).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// One field problem of a 422 Invalid answer (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, ...
    pub reason: String,
    /// Human-readable, in kube-apiserver's words (`Required value`, `Invalid value: ...`).
    pub message: String,
    /// The field path, `spec.containers[0].name`.
    pub field: String,
}

impl Cause {
    /// A required field is missing.
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Self { reason: "FieldValueRequired".into(), message, field: field.into() }
    }

    /// A field has a value that breaks a rule.
    pub fn invalid(field: impl Into<String>, value: &serde_json::Value, detail: &str) -> Self {
        Self {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {detail}"),
            field: field.into(),
        }
    }

    /// A field has a value outside a fixed set (`dryRun=x`: supported values: "All").
    pub fn not_supported(field: impl Into<String>, value: &serde_json::Value, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {value}: supported values: {}", supported.join(", ")),
            field: field.into(),
        }
    }

    /// A field may not be set here.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self { reason: "FieldValueForbidden".into(), message: format!("Forbidden: {detail}"), field: field.into() }
    }

    /// A field may not change after creation.
    pub fn immutable(field: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueInvalid".into(),
            message: "Invalid value: field is immutable".into(),
            field: field.into(),
        }
    }
}

/// Everything that can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: the object (or its namespace) does not exist.
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: GroupResource, name: String },
    /// 404 for a URL that names no resource we serve.
    #[error("the server could not find the requested resource")]
    UnknownPath,
    /// 409: create of an existing name.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: GroupResource, name: String },
    /// 409: a precondition (resourceVersion, uid) no longer holds.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {detail}")]
    Conflict { resource: GroupResource, name: String, detail: String },
    /// 409 from server-side apply: fields other managers own, one cause per field.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    /// 422 with one cause per field.
    #[error("{kind} \"{name}\" is invalid: {}", causes_summary(.causes))]
    Invalid { group: String, kind: String, name: String, causes: Vec<Cause> },
    /// 400: a request that can never succeed as sent.
    #[error("{0}")]
    BadRequest(String),
    /// 403, e.g. new objects in a Terminating namespace.
    #[error("{0}")]
    Forbidden(String),
    /// 401: no or unknown credentials.
    #[error("Unauthorized")]
    Unauthorized,
    /// 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 410: the requested resourceVersion or continue token has been compacted away.
    #[error("{0}")]
    Expired(String),
    /// 413.
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// 415.
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    /// 504: the request did not finish within the server's per-request timeout.
    #[error("{0}")]
    Timeout(String),
    /// 504 (reason Timeout, cause ResourceVersionTooLarge): the client asked for a
    /// resourceVersion the store has not reached, e.g. one from another cluster.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: i64, current: i64 },
    /// 503: the store cannot be reached or did not answer in time; clients retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected store answer. Logged where it is turned into a Status.
    #[error("{0}")]
    Internal(String),

    // Storage-level outcomes, turned into the variants above by the registry (which knows the
    // resource and name). Reaching the edge unmapped is a bug (500).
    /// The key does not exist.
    #[error("key not found: {0}")]
    KeyNotFound(String),
    /// The key already exists (create).
    #[error("key exists: {0}")]
    KeyExists(String),
    /// A uid or resourceVersion precondition does not hold.
    #[error("{0}")]
    PreconditionFailed(String),
}

fn causes_summary(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl Error {
    /// Gives a storage-level error the resource and name the client asked about.
    pub fn for_object(self, resource: &GroupResource, name: &str) -> Self {
        match self {
            Error::KeyNotFound(_) => Error::NotFound { resource: resource.clone(), name: name.to_string() },
            Error::KeyExists(_) => Error::AlreadyExists { resource: resource.clone(), name: name.to_string() },
            Error::PreconditionFailed(detail) => {
                Error::Conflict { resource: resource.clone(), name: name.to_string(), detail }
            }
            other => other,
        }
    }

    /// The 409 every client knows: the object changed since it was read.
    pub fn modified(resource: &GroupResource, name: &str) -> Self {
        Error::Conflict {
            resource: resource.clone(),
            name: name.to_string(),
            detail: "the object has been modified; please apply your changes to the latest version and try again"
                .into(),
        }
    }
}

impl From<etcd_client::Error> for Error {
    fn from(e: etcd_client::Error) -> Self {
        match &e {
            etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision is a future revision") => {
                // The store does not say how far it is; the registry checks first where it can.
                Error::TooLargeResourceVersion { requested: -1, current: -1 }
            }
            etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision has been compacted") => {
                Error::Expired(format!("The resourceVersion for the provided list is too old: {}", s.message()))
            }
            // "etcdserver: request is too large" from the store, or the gRPC layer's own limit
            // (max request bytes + 512 KiB, as etcd) for bigger messages.
            etcd_client::Error::GRpcStatus(s)
                if s.message().contains("too large") || s.code() == tonic::Code::ResourceExhausted =>
            {
                Error::TooLarge(crate::STORE_MAX_REQUEST_BYTES)
            }
            etcd_client::Error::GRpcStatus(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                ) =>
            {
                Error::Unavailable(format!("storage unavailable: {}", s.message()))
            }
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
                Error::Unavailable(format!("storage unavailable: {e}"))
            }
            _ => Error::Internal(format!("storage error: {e}")),
        }
    }
}
