//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) to JSON.
//!
//! A body is the magic `k8s\0`, then a `runtime.Unknown`:
//! `{1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType}`, where `raw`
//! is the typed object (`apps/v1 Deployment`) in protobuf. The typed object is decoded with the
//! generated field table into the JSON kube-apiserver would have received: proto2 presence is
//! kept (an explicit `replicas: 0` stays) but an empty string reads as absent (see
//! `EMPTY_STRING_IS_A_VALUE`), absent fields and empty lists are left out, Go's inlined structs
//! are flattened into their parent, and a field number the table does not know is a 400, never
//! silently dropped.

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::table::{root, Field, Label, Message, Special, Ty};
use crate::error::Error;
use crate::registry::meta::rfc3339;
use crate::Result;

/// The 4 bytes that open every Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type of Kubernetes protobuf.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Nesting deeper than any Kubernetes object is refused (a crafted body cannot overflow the stack).
const MAX_DEPTH: usize = 64;

/// The few `*string` fields where `""` means something other than absent (no storage class,
/// rather than the default one). Go's encoder puts every non-pointer string on the wire even
/// when empty (kubectl sends `imagePullPolicy: ""`), where its JSON would omit it: empty
/// strings are therefore read as absent, except in these fields.
const EMPTY_STRING_IS_A_VALUE: &[(&str, &str)] = &[("api/core/v1/PersistentVolumeClaimSpec", "storageClassName")];

/// Decodes a Kubernetes protobuf body into the object's JSON, `apiVersion` and `kind` included.
pub fn decode(body: &[u8]) -> Result<Value> {
    decode_at(body, 0)
}

/// `decode` of a body found `depth` messages deep (a RawExtension may embed a protobuf object).
fn decode_at(body: &[u8], depth: usize) -> Result<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("", "the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\""))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut content_type = String::new();
    for (tag, wire) in fields(rest, "runtime.Unknown")? {
        match (tag, wire) {
            (1, Wire::Len(tm)) => {
                for (tag, wire) in fields(tm, "runtime.Unknown.typeMeta")? {
                    match (tag, wire) {
                        (1, Wire::Len(b)) => api_version = utf8(b, "typeMeta.apiVersion")?,
                        (2, Wire::Len(b)) => kind = utf8(b, "typeMeta.kind")?,
                        (t, _) => return Err(bad("typeMeta", &format!("unexpected field number {t} in runtime.TypeMeta"))),
                    }
                }
            }
            (2, Wire::Len(b)) => raw = b,
            (3, Wire::Len(b)) => content_encoding = utf8(b, "contentEncoding")?,
            (4, Wire::Len(b)) => content_type = utf8(b, "contentType")?,
            (t, _) => return Err(bad("", &format!("unexpected field number {t} in runtime.Unknown"))),
        }
    }
    if !content_encoding.is_empty() {
        return Err(bad("", &format!("contentEncoding {content_encoding:?} is not supported")));
    }
    if !(content_type.is_empty() || content_type == MEDIA_TYPE) {
        return Err(bad("", &format!("contentType {content_type:?} is not supported inside a protobuf body")));
    }
    if api_version.is_empty() || kind.is_empty() {
        return Err(bad("", "the protobuf body has no apiVersion and kind (runtime.Unknown.typeMeta)"));
    }
    let msg = root(&api_version, &kind)
        .ok_or_else(|| bad("", &format!("no protobuf schema for kind {kind:?} in apiVersion {api_version:?}")))?;
    let mut obj = message(raw, msg, "", depth)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(api_version));
        m.insert("kind".into(), Value::String(kind));
    }
    Ok(obj)
}

fn bad(path: &str, detail: &str) -> Error {
    if path.is_empty() {
        Error::BadRequest(format!("error decoding the protobuf body: {detail}"))
    } else {
        Error::BadRequest(format!("error decoding the protobuf body at {path}: {detail}"))
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// One field's payload on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Len(&'a [u8]),
}

impl Wire<'_> {
    fn name(&self) -> &'static str {
        match self {
            Wire::Varint(_) => "a varint",
            Wire::Fixed64(_) => "a 64-bit value",
            Wire::Fixed32 => "a 32-bit value",
            Wire::Len(_) => "a length-delimited value",
        }
    }
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The (field number, payload) pairs of one message, in wire order.
fn fields<'a>(buf: &'a [u8], path: &str) -> Result<Vec<(u32, Wire<'a>)>> {
    let truncated = || bad(path, "truncated or malformed protobuf");
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos).ok_or_else(truncated)?;
        let tag = u32::try_from(key >> 3).ok().filter(|t| *t > 0).ok_or_else(truncated)?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos).ok_or_else(truncated)?),
            1 => {
                let b = buf.get(pos..pos + 8).ok_or_else(truncated)?;
                pos += 8;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().unwrap()))
            }
            2 => {
                let len = varint(buf, &mut pos).ok_or_else(truncated)?;
                let end = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)).ok_or_else(truncated)?;
                let b = buf.get(pos..end).ok_or_else(truncated)?;
                pos = end;
                Wire::Len(b)
            }
            5 => {
                // No Kubernetes field is a fixed32; skipped over only to name the field.
                buf.get(pos..pos + 4).ok_or_else(truncated)?;
                pos += 4;
                Wire::Fixed32
            }
            w => return Err(bad(path, &format!("unsupported wire type {w} (field number {tag})"))),
        };
        out.push((tag, wire));
    }
    Ok(out)
}

fn utf8(b: &[u8], path: &str) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad(path, "a string is not valid UTF-8"))
}

/// A message's JSON: an object, or the special form of times, quantities, ...
fn message(buf: &[u8], msg: &'static Message, path: &str, depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(bad(path, "nested too deeply"));
    }
    if msg.special != Special::None {
        return special(buf, msg, path, depth);
    }
    let mut obj = Map::new();
    for (tag, wire) in fields(buf, path)? {
        let field = msg.field(tag).ok_or_else(|| {
            bad(path, &format!("unknown field number {tag} in message {} (not in the k8s-pb schema)", msg.name))
        })?;
        let here = child(path, field.json);
        match field.label {
            Label::Single => {
                let v = value(wire, field, &here, depth)?;
                if v == "" && !EMPTY_STRING_IS_A_VALUE.contains(&(msg.name, field.json)) {
                    continue;
                }
                match (obj.get_mut(field.json), v) {
                    // A message seen twice merges, as protobuf says.
                    (Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
                    (_, v) => {
                        obj.insert(field.json.to_string(), v);
                    }
                }
            }
            Label::Inline => match value(wire, field, &here, depth)? {
                Value::Object(inner) => obj.extend(inner),
                other => return Err(bad(&here, &format!("an inlined struct decoded to {other}"))),
            },
            Label::Repeated => {
                let items = obj.entry(field.json).or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = items else { unreachable!("repeated fields are arrays") };
                match (wire, field.ty) {
                    // Packed numbers: one length-delimited run of values.
                    (Wire::Len(b), Ty::Int32 | Ty::Int64 | Ty::Bool | Ty::Double) => {
                        let mut pos = 0;
                        while pos < b.len() {
                            let w = if field.ty == Ty::Double {
                                let x = b.get(pos..pos + 8).ok_or_else(|| bad(&here, "truncated packed values"))?;
                                pos += 8;
                                Wire::Fixed64(u64::from_le_bytes(x.try_into().unwrap()))
                            } else {
                                Wire::Varint(varint(b, &mut pos).ok_or_else(|| bad(&here, "truncated packed values"))?)
                            };
                            items.push(value(w, field, &here, depth)?);
                        }
                    }
                    _ => items.push(value(wire, field, &here, depth)?),
                }
            }
            Label::Map => {
                let Wire::Len(entry) = wire else {
                    return Err(bad(&here, &format!("a map entry is {}", wire.name())));
                };
                let mut key = String::new();
                let mut val = None;
                for (tag, wire) in fields(entry, &here)? {
                    match (tag, wire) {
                        (1, Wire::Len(b)) => key = utf8(b, &here)?,
                        (2, w) => val = Some(w),
                        (t, _) => return Err(bad(&here, &format!("unexpected field number {t} in a map entry"))),
                    }
                }
                let here = child(&here, &key);
                let v = match val {
                    Some(w) => value(w, field, &here, depth)?,
                    None => default(field, &here, depth)?,
                };
                let map = obj.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, v);
                }
            }
        }
    }
    Ok(Value::Object(obj))
}

/// A map value that the encoder left out because it was the default.
fn default(field: &Field, path: &str, depth: usize) -> Result<Value> {
    match field.ty {
        Ty::String | Ty::Bytes => Ok(Value::String(String::new())),
        Ty::Bool => Ok(Value::Bool(false)),
        Ty::Int32 | Ty::Int64 | Ty::Double => Ok(Value::from(0)),
        Ty::Message(_) => message(&[], field.ty.message().unwrap(), path, depth + 1),
    }
}

/// One value of `field` (an element, for repeated fields and maps).
fn value(wire: Wire<'_>, field: &Field, path: &str, depth: usize) -> Result<Value> {
    let mismatch = || bad(path, &format!("{} where {:?} was expected", wire.name(), field.ty));
    Ok(match (field.ty, wire) {
        (Ty::String, Wire::Len(b)) => Value::String(utf8(b, path)?),
        (Ty::Bytes, Wire::Len(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Ty::Message(_), Wire::Len(b)) => message(b, field.ty.message().unwrap(), path, depth + 1)?,
        (Ty::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // int32 negatives are sign-extended to 64 bits on the wire.
        (Ty::Int32, Wire::Varint(v)) => Value::from(v as i64 as i32),
        (Ty::Int64, Wire::Varint(v)) => Value::from(v as i64),
        (Ty::Double, Wire::Fixed64(v)) => {
            Number::from_f64(f64::from_bits(v)).map(Value::Number).ok_or_else(|| bad(path, "not a finite number"))?
        }
        _ => return Err(mismatch()),
    })
}

/// The JSON forms of Time, MicroTime, Duration, RawExtension, IntOrString and Quantity.
fn special(buf: &[u8], msg: &'static Message, path: &str, depth: usize) -> Result<Value> {
    let mut ints = [0i64; 4];
    let mut bytes: [Option<&[u8]>; 4] = [None; 4];
    for (tag, wire) in fields(buf, path)? {
        let known = msg.field(tag).filter(|_| tag < 4);
        match (known, wire) {
            (Some(_), Wire::Varint(v)) => ints[tag as usize] = v as i64,
            (Some(_), Wire::Len(b)) => bytes[tag as usize] = Some(b),
            _ => return Err(bad(path, &format!("unexpected field number {tag} in {}", msg.name))),
        }
    }
    Ok(match msg.special {
        // Go's zero time is sent as an empty message and is null in JSON.
        Special::Time | Special::MicroTime if ints[1] == 0 && ints[2] == 0 => Value::Null,
        Special::Time | Special::MicroTime => {
            let secs = u64::try_from(ints[1]).map_err(|_| bad(path, "times before 1970 are not supported"))?;
            let s = rfc3339(secs);
            if msg.special == Special::Time {
                Value::String(s)
            } else {
                let micros = (ints[2] as i32).clamp(0, 999_999_999) / 1000;
                Value::String(format!("{}.{micros:06}Z", s.trim_end_matches('Z')))
            }
        }
        Special::Duration => Value::String(go_duration(ints[1])),
        Special::RawJson => match bytes[1] {
            None | Some([]) => Value::Null,
            Some(b) if b.starts_with(MAGIC) => decode_at(b, depth + 1)?,
            Some(b) => serde_json::from_slice(b).map_err(|e| bad(path, &format!("embedded JSON: {e}")))?,
        },
        Special::IntOrString if ints[1] == 1 => Value::String(utf8(bytes[3].unwrap_or_default(), path)?),
        Special::IntOrString => Value::from(ints[2] as i32),
        Special::Quantity => match bytes[1] {
            Some(b) => Value::String(utf8(b, path)?),
            None => Value::String("0".into()),
        },
        Special::None => unreachable!("special() is only called for special messages"),
    })
}

/// Nanoseconds as Go's `time.Duration.String()`: `1h2m3s`, `1.5s`, `300ms`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    // `whole.fraction` of `v / unit` without trailing zeros.
    let frac = |v: u64, unit: u64| {
        let digits = unit.ilog10() as usize;
        let f = format!("{:0digits$}", v % unit);
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            format!("{}", v / unit)
        } else {
            format!("{}.{f}", v / unit)
        }
    };
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", frac(u, 1_000))
    } else if u < 1_000_000_000 {
        format!("{}ms", frac(u, 1_000_000))
    } else {
        let (h, rest) = (u / 3_600_000_000_000, u % 3_600_000_000_000);
        let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
        let mut s = String::new();
        if h > 0 {
            s.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            s.push_str(&format!("{m}m"));
        }
        s.push_str(&format!("{}s", frac(rest, 1_000_000_000)));
        s
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    use prost::Message as _;
    use serde_json::json;

    use super::*;
    use crate::codec::table::{self, MESSAGES};

    /// A body as kubectl sends it: the magic, then `runtime.Unknown` around the typed object.
    fn body(api_version: &str, kind: &str, obj: &impl prost::Message) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
            raw: Some(obj.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC, &unknown.encode_to_vec()].concat()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn meta(name: &str) -> Option<meta::ObjectMeta> {
        // Go sends a zero creationTimestamp as an empty message.
        Some(meta::ObjectMeta { name: s(name), creation_timestamp: Some(meta::Time::default()), ..Default::default() })
    }

    fn err(body: &[u8]) -> String {
        match decode(body) {
            Err(Error::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn namespace() {
        let ns = core::Namespace {
            metadata: Some(meta::ObjectMeta { labels: labels(&[("team", "a")]), ..meta("kc").unwrap() }),
            spec: Some(core::NamespaceSpec::default()),
            status: Some(core::NamespaceStatus::default()),
        };
        assert_eq!(
            decode(&body("v1", "Namespace", &ns)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "kc", "labels": {"team": "a"}, "creationTimestamp": null},
                   "spec": {}, "status": {}})
        );
    }

    fn container(name: &str, image: &str) -> core::Container {
        core::Container { name: s(name), image: s(image), ..Default::default() }
    }

    #[test]
    fn deployment_keeps_an_explicit_zero_and_int_or_strings() {
        let sel = labels(&[("app", "web")]);
        let d = apps::Deployment {
            metadata: meta("web"),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector { match_labels: sel.clone(), ..Default::default() }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta { labels: sel, ..Default::default() }),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            ports: vec![core::ContainerPort { container_port: Some(8080), ..Default::default() }],
                            ..container("app", "busybox")
                        }],
                        ..Default::default()
                    }),
                }),
                strategy: Some(apps::DeploymentStrategy {
                    r#type: s("RollingUpdate"),
                    rolling_update: Some(apps::RollingUpdateDeployment {
                        max_surge: Some(IntOrString { r#type: Some(1), int_val: None, str_val: s("25%") }),
                        max_unavailable: Some(IntOrString { r#type: Some(0), int_val: Some(1), str_val: None }),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&body("apps/v1", "Deployment", &d)).unwrap();
        assert_eq!(
            v["spec"],
            json!({
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 8080}]}]}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            })
        );
        assert_eq!((v["apiVersion"].as_str(), v["kind"].as_str()), (Some("apps/v1"), Some("Deployment")));
        assert!(v.get("status").is_none(), "absent optionals stay absent: {v}");
        // Without the field, replicas is absent (the default applies), not 0.
        let mut d = d;
        d.spec.as_mut().unwrap().replicas = None;
        assert!(decode(&body("apps/v1", "Deployment", &d)).unwrap()["spec"].get("replicas").is_none());
    }

    #[test]
    fn empty_strings_are_absent_as_in_go_json() {
        // Go puts non-pointer strings on the wire even when empty; its JSON omits them.
        let d = apps::Deployment {
            metadata: meta("web"),
            spec: Some(apps::DeploymentSpec {
                strategy: Some(apps::DeploymentStrategy { r#type: s(""), rolling_update: None }),
                template: Some(core::PodTemplateSpec {
                    metadata: None,
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container { image_pull_policy: s(""), ..container("c", "busybox") }],
                        dns_policy: s(""),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&body("apps/v1", "Deployment", &d)).unwrap();
        assert_eq!(
            v["spec"],
            json!({"strategy": {}, "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}})
        );
        // ... but a claim's storageClassName "" (no class) is not the default class.
        let pvc = core::PersistentVolumeClaim {
            metadata: meta("data"),
            spec: Some(core::PersistentVolumeClaimSpec { storage_class_name: s(""), ..Default::default() }),
            status: None,
        };
        let v = decode(&body("v1", "PersistentVolumeClaim", &pvc)).unwrap();
        assert_eq!(v["spec"], json!({"storageClassName": ""}));
    }

    #[test]
    fn secret_bytes_are_base64() {
        let sec = core::Secret {
            metadata: meta("db"),
            data: [("password".to_string(), b"s3cr\xffet".to_vec()), ("empty".to_string(), vec![])].into(),
            string_data: labels(&[("user", "admin")]),
            r#type: s("Opaque"),
            immutable: Some(false),
        };
        let v = decode(&body("v1", "Secret", &sec)).unwrap();
        assert_eq!(v["data"], json!({"password": "czNjcv9ldA==", "empty": ""}));
        assert_eq!((v["stringData"]["user"].as_str(), v["type"].as_str()), (Some("admin"), Some("Opaque")));
        assert_eq!(v["immutable"], json!(false));
    }

    #[test]
    fn service_target_port_string() {
        let svc = core::Service {
            metadata: meta("web"),
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: Some(IntOrString { r#type: Some(1), int_val: None, str_val: s("web") }),
                    ..Default::default()
                }],
                cluster_ips: vec!["10.0.0.1".into()],
                selector: labels(&[("app", "web")]),
                r#type: s("ClusterIP"),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&body("v1", "Service", &svc)).unwrap();
        assert_eq!(
            v["spec"],
            json!({"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"}],
                   "clusterIPs": ["10.0.0.1"], "selector": {"app": "web"}, "type": "ClusterIP"})
        );
    }

    #[test]
    fn pod_acronyms_quantities_and_times() {
        let q = |s: &str| Quantity { string: Some(s.into()) };
        let pod = core::Pod {
            metadata: Some(meta::ObjectMeta {
                name: s("p"),
                creation_timestamp: Some(meta::Time { seconds: Some(1_700_000_000), nanos: Some(0) }),
                ..Default::default()
            }),
            spec: Some(core::PodSpec {
                host_ipc: Some(true),
                host_pid: Some(false),
                containers: vec![core::Container {
                    resources: Some(core::ResourceRequirements {
                        limits: [("cpu".to_string(), q("500m")), ("memory".to_string(), q("64Mi"))].into(),
                        requests: [("cpu".to_string(), q("100m"))].into(),
                        ..Default::default()
                    }),
                    ..container("c", "busybox")
                }],
                ..Default::default()
            }),
            status: Some(core::PodStatus {
                pod_ips: vec![core::PodIp { ip: s("10.1.0.5") }],
                ..Default::default()
            }),
        };
        let v = decode(&body("v1", "Pod", &pod)).unwrap();
        assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!((v["spec"]["hostIPC"].as_bool(), v["spec"]["hostPID"].as_bool()), (Some(true), Some(false)));
        assert_eq!(
            v["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}})
        );
        assert_eq!(v["status"], json!({"podIPs": [{"ip": "10.1.0.5"}]}));
    }

    #[test]
    fn micro_time_and_durations() {
        let ev = k8s_pb::api::events::v1::Event {
            metadata: meta("e"),
            event_time: Some(meta::MicroTime { seconds: Some(1_700_000_000), nanos: Some(123_456_789) }),
            ..Default::default()
        };
        assert_eq!(decode(&body("events.k8s.io/v1", "Event", &ev)).unwrap()["eventTime"], "2023-11-14T22:13:20.123456Z");
        for (ns, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (3_723_000_000_000, "1h2m3s"),
            (3_600_000_000_000, "1h0m0s"),
            (-90_000_000_000, "-1m30s"),
        ] {
            assert_eq!(go_duration(ns), want);
        }
    }

    #[test]
    fn raw_extensions_hold_json_or_nested_protobuf() {
        use k8s_pb::apimachinery::pkg::runtime::RawExtension;
        let rev = |data: Vec<u8>| apps::ControllerRevision {
            metadata: meta("r"),
            data: Some(RawExtension { raw: Some(data) }),
            revision: Some(3),
        };
        let v = decode(&body("apps/v1", "ControllerRevision", &rev(br#"{"spec":{"x":1}}"#.to_vec()))).unwrap();
        assert_eq!((v["data"].clone(), v["revision"].clone()), (json!({"spec": {"x": 1}}), json!(3)));
        let inner = body("v1", "Namespace", &core::Namespace { metadata: meta("n"), ..Default::default() });
        let v = decode(&body("apps/v1", "ControllerRevision", &rev(inner))).unwrap();
        assert_eq!(v["data"], json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "creationTimestamp": null}}));
        assert!(err(&body("apps/v1", "ControllerRevision", &rev(b"{not json".to_vec()))).contains("at data: embedded JSON"));
        // Protobuf nested in protobuf without end is cut off, not a stack overflow.
        let mut deep = body("apps/v1", "ControllerRevision", &rev(br#"{}"#.to_vec()));
        for _ in 0..200 {
            deep = body("apps/v1", "ControllerRevision", &rev(deep));
        }
        assert!(err(&deep).contains("nested too deeply"));
    }

    #[test]
    fn bad_bodies_are_400s() {
        let good = body("v1", "Namespace", &core::Namespace { metadata: meta("x"), ..Default::default() });
        assert!(err(&good[4..]).contains("k8s\\x00"));
        assert!(err(&good[..good.len() - 6]).contains("truncated"));
        assert!(err(&body("v1", "Widget", &core::Namespace::default())).contains("no protobuf schema for kind \"Widget\""));
        assert!(err(&body("", "", &core::Namespace::default())).contains("no apiVersion and kind"));
        // A field number the schema does not know is refused, never dropped: 99 in ObjectMeta.
        let mut obj_meta = meta::ObjectMeta { name: s("x"), ..Default::default() }.encode_to_vec();
        obj_meta.extend([0x98, 0x06, 0x01]); // field 99, varint 1
        let mut raw = vec![0x0a, obj_meta.len() as u8]; // Namespace.metadata
        raw.extend(&obj_meta);
        let unknown = Unknown {
            type_meta: Some(TypeMeta { api_version: s("v1"), kind: s("Namespace") }),
            raw: Some(raw),
            ..Default::default()
        };
        let m = err(&[MAGIC, &unknown.encode_to_vec()].concat());
        assert!(m.contains("at metadata: unknown field number 99 in message apimachinery/pkg/apis/meta/v1/ObjectMeta"), "{m}");
        // The right number with the wrong wire type: name (string) as a varint.
        let unknown = Unknown { raw: Some(vec![0x0a, 0x02, 0x08, 0x01]), ..unknown };
        let m = err(&[MAGIC, &unknown.encode_to_vec()].concat());
        assert!(m.contains("at metadata.name: a varint where String was expected"), "{m}");
    }

    #[test]
    fn json_names_follow_the_kubernetes_acronym_rule() {
        let field = |api_version: &str, path: &[&str]| -> bool {
            let mut msg = table::root(api_version, path[0]).unwrap_or_else(|| panic!("{api_version} {}", path[0]));
            for (i, name) in path[1..].iter().enumerate() {
                let Some(f) = msg.field_named(name) else { return false };
                if i + 2 == path.len() {
                    return true;
                }
                msg = f.ty.message().unwrap();
            }
            true
        };
        for (av, path) in [
            ("v1", &["Pod", "spec", "hostIPC"][..]),
            ("v1", &["Pod", "spec", "hostPID"]),
            ("v1", &["Pod", "spec", "setHostnameAsFQDN"]),
            ("v1", &["Pod", "status", "podIPs"]),
            ("v1", &["Pod", "status", "hostIPs"]),
            ("v1", &["Pod", "status", "podIP"]),
            ("v1", &["Pod", "spec", "volumes", "downwardAPI"]),
            ("v1", &["Pod", "spec", "volumes", "fc", "targetWWNs"]),
            ("v1", &["Pod", "spec", "containers", "terminationMessagePath"]),
            ("v1", &["PersistentVolume", "spec", "scaleIO"]),
            ("v1", &["Service", "spec", "clusterIPs"]),
            ("v1", &["Service", "spec", "externalIPs"]),
            ("v1", &["Service", "spec", "ipFamilyPolicy"]),
            ("v1", &["Service", "spec", "loadBalancerIP"]),
            ("v1", &["Node", "spec", "podCIDRs"]),
            ("v1", &["Node", "spec", "providerID"]),
            ("v1", &["Node", "status", "nodeInfo", "systemUUID"]),
            ("v1", &["Node", "status", "nodeInfo", "bootID"]),
            ("rbac.authorization.k8s.io/v1", &["ClusterRole", "rules", "nonResourceURLs"]),
            ("networking.k8s.io/v1", &["IngressClass", "spec", "parameters", "apiGroup"]),
            ("autoscaling/v1", &["HorizontalPodAutoscaler", "spec", "targetCPUUtilizationPercentage"]),
            ("v1", &["ServiceAccount", "automountServiceAccountToken"]),
            ("v1", &["ConfigMap", "binaryData"]),
            ("batch/v1", &["CronJob", "spec", "jobTemplate", "spec", "ttlSecondsAfterFinished"]),
        ] {
            assert!(field(av, path), "{av} {path:?}");
        }
        for (av, path) in [("v1", &["Pod", "spec", "hostIpc"][..]), ("v1", &["Pod", "status", "podIps"])] {
            assert!(!field(av, path), "{av} {path:?}");
        }
        // Names are unique within a message.
        for m in MESSAGES {
            let mut names: Vec<&str> = m.fields.iter().map(|f| f.json).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), m.fields.len(), "{}", m.name);
        }
    }

    /// Every property our JSON Schemas name exists, under the same name, in the protobuf schema.
    #[test]
    fn schema_property_names_are_protobuf_json_names() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas");
        let defs: Value = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/defs.json")).unwrap()).unwrap();
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") || path.ends_with("defs.json") {
                continue;
            }
            let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let title = schema["title"].as_str().unwrap();
            let mut words = title.split(' ');
            let (av, kind) = (words.next().unwrap(), words.next().unwrap());
            let msg = table::root(av, kind).unwrap_or_else(|| panic!("{title}: no protobuf message"));
            walk(&schema, msg, title, true, &defs, &mut checked);
        }
        assert!(checked > 200, "only {checked} properties checked");
    }

    fn walk(schema: &Value, msg: &'static Message, at: &str, root: bool, defs: &Value, checked: &mut usize) {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/$defs/");
            return walk(&defs["$defs"][name], msg, at, root, defs, checked);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for s in schema[key].as_array().into_iter().flatten() {
                walk(s, msg, at, root, defs, checked);
            }
        }
        let Some(props) = schema["properties"].as_object() else { return };
        for (name, sub) in props {
            if root && matches!(name.as_str(), "apiVersion" | "kind") {
                continue;
            }
            let here = format!("{at}.{name}");
            let f = msg.field_named(name).unwrap_or_else(|| panic!("{here}: not a field of {}", msg.name));
            *checked += 1;
            let Some(inner) = f.ty.message().filter(|m| m.special == Special::None) else { continue };
            let sub = match f.label {
                Label::Single | Label::Inline => sub,
                Label::Repeated => &sub["items"],
                Label::Map => &sub["additionalProperties"],
            };
            walk(sub, inner, &here, false, defs, checked);
        }
    }
}
