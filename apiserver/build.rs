//! Generates the protobuf field table (`$OUT_DIR/k8s_proto_table.rs`) that `src/codec/` decodes
//! Kubernetes protobuf bodies with.
//!
//! The schema is the source of the `k8s-pb` crate (prost-generated Rust for every Kubernetes
//! message): each `#[prost(..., tag = "N")] pub field: Type` gives a tag, a wire type and, for
//! messages, the nested type. prost snake_cased the proto field names, so the JSON names are
//! rebuilt here (lowerCamel plus Kubernetes' acronym rule: `host_ipc` → `hostIPC`).
//! The crate's source is found through Cargo.lock's version of k8s-pb in the cargo registry
//! (or `K8S_PB_SRC=<dir with lib.rs>`); the build fails with a clear message otherwise.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=K8S_PB_SRC");
    let src = locate_k8s_pb();
    println!("cargo:rerun-if-changed={}", src.display());
    let table = Table::read(&src);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("k8s_proto_table.rs");
    std::fs::write(&out, table.render()).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// The `src/` directory of the k8s-pb version that Cargo.lock pins.
fn locate_k8s_pb() -> PathBuf {
    if let Ok(dir) = std::env::var("K8S_PB_SRC") {
        let dir = PathBuf::from(dir);
        assert!(dir.join("lib.rs").is_file(), "K8S_PB_SRC={} has no lib.rs", dir.display());
        return dir;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let lock_path = manifest.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_else(|e| panic!("reading {}: {e}", lock_path.display()));
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"k8s-pb\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| panic!("Cargo.lock has no k8s-pb package: it is a dev- and build-dependency of apiserver"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let mut candidates = vec![manifest.join(format!("../vendor/k8s-pb-{version}/src")), manifest.join("../vendor/k8s-pb/src")];
    if let Ok(registries) = std::fs::read_dir(cargo_home.join("registry/src")) {
        for r in registries.flatten() {
            candidates.push(r.path().join(format!("k8s-pb-{version}/src")));
        }
    }
    candidates.into_iter().find(|c| c.join("lib.rs").is_file()).unwrap_or_else(|| {
        panic!(
            "cannot find the source of k8s-pb {version} (the protobuf schema of Kubernetes messages) under \
             {}/registry/src/*/ or vendor/: run `cargo fetch`, or set K8S_PB_SRC to its src/ directory",
            cargo_home.display()
        )
    })
}

/// One field as the table stores it.
struct Field {
    tag: u32,
    json: String,
    /// `String`, `Bool`, `Int32`, `Int64`, `Double`, `Bytes` or a message path.
    ty: FieldType,
    label: &'static str,
}

enum FieldType {
    Scalar(&'static str),
    Message(String),
}

struct Message {
    /// `api/apps/v1/Deployment`.
    path: String,
    fields: Vec<Field>,
}

struct Table {
    messages: Vec<Message>,
    /// (apiVersion, kind) → message path.
    roots: BTreeMap<(String, String), String>,
}

impl Table {
    fn read(src: &Path) -> Self {
        let mut files = Vec::new();
        collect_mod_files(src, src, &mut files);
        files.sort();
        let mut messages = Vec::new();
        let mut roots = BTreeMap::new();
        for (module, file) in files {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
            let mut api_version = None;
            let mut names = Vec::new();
            for item in &parsed.items {
                match item {
                    syn::Item::Struct(s) if is_prost_message(s) => {
                        let name = s.ident.to_string();
                        let fields = s.fields.iter().filter_map(|f| field(&module, &name, f)).collect();
                        messages.push(Message { path: format!("{module}/{name}"), fields });
                        names.push(name);
                    }
                    syn::Item::Impl(i) if impl_of(i) == Some("Resource") => {
                        let av = const_str(i, "API_VERSION");
                        assert!(
                            api_version.is_none() || api_version == av,
                            "{module}: Resource impls of two apiVersions ({api_version:?}, {av:?})"
                        );
                        api_version = av;
                    }
                    _ => {}
                }
            }
            if let Some(av) = api_version {
                for n in names {
                    let path = format!("{module}/{n}");
                    if let Some(other) = roots.insert((av.clone(), n.clone()), path.clone()) {
                        panic!("{av} {n} is both {other} and {path}");
                    }
                }
            }
        }
        assert!(messages.len() > 500, "k8s-pb's source yielded only {} messages: its layout changed", messages.len());
        Table { messages, roots }
    }

    fn render(&self) -> String {
        let index: HashMap<&str, usize> = self.messages.iter().enumerate().map(|(i, m)| (m.path.as_str(), i)).collect();
        let mut out = String::from("// @generated by apiserver/build.rs from the source of k8s-pb.\n\n");
        out.push_str("pub(crate) static MESSAGES: &[Message] = &[\n");
        for m in &self.messages {
            let special = special(&m.path);
            writeln!(out, "    Message {{ name: {:?}, special: Special::{special}, fields: &[", m.path).unwrap();
            let mut fields: Vec<&Field> = m.fields.iter().collect();
            fields.sort_by_key(|f| f.tag);
            for f in fields {
                let ty = match &f.ty {
                    FieldType::Scalar(s) => format!("Ty::{s}"),
                    FieldType::Message(p) => {
                        let i = index.get(p.as_str()).unwrap_or_else(|| panic!("{}: unknown message type {p}", m.path));
                        format!("Ty::Message({i})")
                    }
                };
                writeln!(out, "        Field {{ tag: {}, json: {:?}, ty: {ty}, label: Label::{} }},", f.tag, f.json, f.label)
                    .unwrap();
            }
            out.push_str("    ] },\n");
        }
        out.push_str("];\n\n/// (apiVersion, kind, index into MESSAGES), sorted.\n");
        out.push_str("pub(crate) static ROOTS: &[(&str, &str, u16)] = &[\n");
        for ((av, kind), path) in &self.roots {
            writeln!(out, "    ({av:?}, {kind:?}, {}),", index[path.as_str()]).unwrap();
        }
        out.push_str("];\n");
        out
    }
}

/// Every `mod.rs` under `dir`, with its module path relative to `root` (`api/apps/v1`).
fn collect_mod_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_mod_files(root, &p, out);
        } else if p.file_name().is_some_and(|n| n == "mod.rs") {
            let module = p.parent().unwrap().strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.push((module, p));
        }
    }
}

/// Messages the decoder turns into their JSON forms instead of objects.
fn special(path: &str) -> &'static str {
    match path {
        "apimachinery/pkg/apis/meta/v1/Time" => "Time",
        "apimachinery/pkg/apis/meta/v1/MicroTime" => "MicroTime",
        "apimachinery/pkg/apis/meta/v1/Duration" => "Duration",
        "apimachinery/pkg/apis/meta/v1/FieldsV1" => "RawJson",
        "apimachinery/pkg/runtime/RawExtension" => "RawJson",
        "apiextensions_apiserver/pkg/apis/apiextensions/v1/Json"
        | "apiextensions_apiserver/pkg/apis/apiextensions/v1beta1/Json" => "RawJson",
        "apimachinery/pkg/util/intstr/IntOrString" => "IntOrString",
        "apimachinery/pkg/api/resource/Quantity" => "Quantity",
        _ => "None",
    }
}

fn is_prost_message(s: &syn::ItemStruct) -> bool {
    s.attrs.iter().any(|a| a.path().is_ident("derive") && quote_tokens(&a.meta).contains("Message"))
}

fn quote_tokens(m: &syn::Meta) -> String {
    match m {
        syn::Meta::List(l) => l.tokens.to_string(),
        _ => String::new(),
    }
}

/// `impl crate::Resource for X` → `Resource`.
fn impl_of(i: &syn::ItemImpl) -> Option<&'static str> {
    let (_, path, _) = i.trait_.as_ref()?;
    (path.segments.last()?.ident == "Resource").then_some("Resource")
}

fn const_str(i: &syn::ItemImpl, name: &str) -> Option<String> {
    i.items.iter().find_map(|it| match it {
        syn::ImplItem::Const(c) if c.ident == name => match &c.expr {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// One `#[prost(...)]` field of message `msg` in `module`.
fn field(module: &str, msg: &str, f: &syn::Field) -> Option<Field> {
    let attr = f.attrs.iter().find(|a| a.path().is_ident("prost"))?;
    let spec = quote_tokens(&attr.meta);
    let rust_name = f.ident.as_ref().unwrap().to_string();
    let rust_name = rust_name.trim_start_matches("r#");
    let tag = spec
        .split("tag = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{module}/{msg}.{rust_name}: no tag in #[prost({spec})]"));
    let first = spec.split([',', ' ']).next().unwrap_or("");
    let inner = innermost_type(module, &f.ty);
    let scalar = |s: &str| -> FieldType {
        FieldType::Scalar(match s {
            "string" => "String",
            "bool" => "Bool",
            "int32" => "Int32",
            "int64" => "Int64",
            "double" => "Double",
            "bytes" => "Bytes",
            other => panic!("{module}/{msg}.{rust_name}: unsupported protobuf type {other}"),
        })
    };
    let (ty, label) = if first == "btree_map" || first == "map" {
        // `btree_map = "string, message"`: keys are always strings in Kubernetes.
        let kinds = spec.split('"').nth(1).unwrap_or("");
        let (key, value) = kinds.split_once(',').map(|(k, v)| (k.trim(), v.trim())).unwrap_or(("", ""));
        assert_eq!(key, "string", "{module}/{msg}.{rust_name}: map key {key}");
        let ty = if value == "message" { FieldType::Message(inner.expect("map value type")) } else { scalar(value) };
        (ty, "Map")
    } else {
        let ty = if first == "message" { FieldType::Message(inner.expect("message type")) } else { scalar(first) };
        let repeated = spec.split(',').any(|p| p.trim() == "repeated");
        let label = if repeated {
            "Repeated"
        } else if is_inline(msg, rust_name) {
            "Inline"
        } else {
            "Single"
        };
        (ty, label)
    };
    Some(Field { tag, json: json_name(module, msg, rust_name), ty, label })
}

/// The message path of a field's type with `Option`, `Vec`, `Box` and `BTreeMap` peeled off,
/// resolved against `module` (`super::super::core::v1::PodSpec` from `api/apps/v1`).
fn innermost_type(module: &str, ty: &syn::Type) -> Option<String> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let wrapper = ["Option", "Vec", "Box", "BTreeMap", "HashMap"].contains(&last.ident.to_string().as_str());
    if wrapper {
        if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
            let inner = args.args.iter().rev().find_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })?;
            return innermost_type(module, inner);
        }
    }
    let mut parts: Vec<&str> = module.split('/').collect();
    let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
    let mut rest = segs.as_slice();
    if rest.first().is_some_and(|s| s == "crate") {
        parts.clear();
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        parts.pop();
        rest = &rest[1..];
    }
    let mut all: Vec<&str> = parts;
    all.extend(rest.iter().map(String::as_str));
    Some(all.join("/"))
}

/// Go structs embedded with `json:",inline"`: their fields sit in the parent's JSON object,
/// while protobuf nests them under a field. prost's output does not say which fields these are
/// (the Go struct tags are gone), so they are listed here: (message, prost field name).
const INLINE: &[(&str, &str)] = &[
    ("Volume", "volume_source"),
    ("PersistentVolumeSpec", "persistent_volume_source"),
    ("Probe", "handler"),
    ("EphemeralContainer", "ephemeral_container_common"),
    ("IngressRule", "ingress_rule_value"),
    ("NamedRuleWithOperations", "rule_with_operations"),
    ("RuleWithOperations", "rule"),
    ("DeviceAllocationConfiguration", "device_configuration"),
    ("DeviceClaimConfiguration", "device_configuration"),
    ("DeviceClassConfiguration", "device_configuration"),
];

/// Whether a message field is an inlined Go struct; every `LocalObjectReference` embedding
/// (ConfigMapKeySelector, SecretEnvSource, ...) is one.
fn is_inline(msg: &str, field: &str) -> bool {
    field == "local_object_reference" || INLINE.contains(&(msg, field))
}

/// Token sequences prost split out of one Go acronym (`podCIDRs` → `pod_cid_rs`).
const SPLIT_ACRONYMS: &[(&[&str], &str)] = &[
    (&["a", "pi"], "api"),
    (&["j", "son"], "json"),
    (&["u", "id"], "uid"),
    (&["cid", "rs"], "cidrs"),
    (&["ur", "ls"], "urls"),
    (&["ww", "ns"], "wwns"),
];

/// Words Kubernetes writes in capitals after the first word (`hostIPC`, `podIPs`, `volumeID`).
const ACRONYMS: &[(&str, &str)] = &[
    ("api", "API"),
    ("cidr", "CIDR"),
    ("cidrs", "CIDRs"),
    ("cpu", "CPU"),
    ("fqdn", "FQDN"),
    ("id", "ID"),
    ("io", "IO"),
    ("ip", "IP"),
    ("ipc", "IPC"),
    ("ips", "IPs"),
    ("json", "JSON"),
    ("pid", "PID"),
    ("tls", "TLS"),
    ("uid", "UID"),
    ("uri", "URI"),
    ("url", "URL"),
    ("urls", "URLs"),
    ("uuid", "UUID"),
    ("wwns", "WWNs"),
];

/// The JSON name of a prost field: `host_ipc` → `hostIPC`, `non_resource_ur_ls` →
/// `nonResourceURLs`, `a_pi_group` → `apiGroup`.
fn json_name(module: &str, msg: &str, snake: &str) -> String {
    if module.starts_with("apiextensions_apiserver/") && msg == "JsonSchemaProps" {
        match snake {
            "ref" => return "$ref".into(),
            "schema" => return "$schema".into(),
            s if s.starts_with("x_kubernetes_") => return s.replace('_', "-"),
            _ => {}
        }
    }
    let raw: Vec<&str> = snake.split('_').collect();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if let Some((seq, joined)) = SPLIT_ACRONYMS.iter().find(|(seq, _)| raw[i..].starts_with(seq)) {
            words.push(joined.to_string());
            i += seq.len();
        } else {
            words.push(raw[i].to_string());
            i += 1;
        }
    }
    let mut out = words[0].clone();
    for w in &words[1..] {
        match ACRONYMS.iter().find(|(k, _)| k == w) {
            Some((_, upper)) => out.push_str(upper),
            None => {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
            }
        }
    }
    out
}
