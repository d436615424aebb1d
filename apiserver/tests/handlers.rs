//! Handler tests: the real `Router` called without sockets (`tower::ServiceExt::oneshot`), over
//! a real single-member store (RocksDB in a tempdir) reached through the etcd v3 API.

use std::sync::Arc;
use std::time::Duration;

use apiserver::auth::TokenAuth;
use apiserver::handlers::{router, AppState};
use apiserver::registry::Registry;
use apiserver::storage::EtcdStorage;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use store::server::{RunningStore, StoreConfig};
use tower::ServiceExt;

const TOKEN: &str = "test-token";

struct Api {
    router: Router,
    endpoint: String,
    store: Option<RunningStore>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::single("t", dir.path().join("store"), "127.0.0.1:0".parse().unwrap());
        config.election_timeout = Duration::from_millis(300);
        config.heartbeat = Duration::from_millis(50);
        let store = RunningStore::start(config).await.unwrap();
        let endpoint = format!("http://{}", store.client_addrs()[0]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let storage = loop {
            if let Ok(s) = EtcdStorage::connect(std::slice::from_ref(&endpoint)).await {
                use apiserver::storage::Storage;
                if s.current_revision().await.is_ok() {
                    break s;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "store never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let registry = Registry::new(apiserver::storage::layered(storage)).unwrap().with_bookmark_interval(Duration::from_millis(200));
        let registry = Arc::new(registry);
        registry.ensure_namespace("default").await.unwrap();
        let auth = TokenAuth::parse(&format!("{TOKEN},admin,admin,\"system:masters\"\n")).unwrap();
        let router = router(AppState { registry, auth: Some(Arc::new(auth)) });
        Self { router, endpoint, store: Some(store), _dir: dir }
    }

    async fn raw(&self, req: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(req).await.unwrap()
    }

    async fn call_ct(&self, method: &str, path: &str, content_type: Option<&str>, body: Option<Vec<u8>>) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {TOKEN}"));
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        let resp = self.raw(b.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap()).await;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        (status, v)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let ct = match method {
            "PATCH" => Some("application/merge-patch+json"),
            _ if body.is_some() => Some("application/json"),
            _ => None,
        };
        self.call_ct(method, path, ct, body.map(|b| b.to_string().into_bytes())).await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    async fn create_ns(&self, name: &str) {
        self.ok("POST", "/api/v1/namespaces", Some(json!({"metadata": {"name": name}}))).await;
    }

    /// Reads watch events until `n` arrived or the stream ended (bounded by `wait`).
    async fn watch(&self, path: &str, n: usize, wait: Duration) -> (StatusCode, Vec<Value>) {
        let req = Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let resp = self.raw(req).await;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while events.len() < n {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(f))) => f,
                _ => break,
            };
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    events.push(serde_json::from_slice(&line).unwrap());
                }
            }
        }
        (status, events)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            // Shut the member down on a runtime of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Runtime::new().unwrap().block_on(store.shutdown());
            })
            .join();
        }
    }
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

fn rv(v: &Value) -> i64 {
    v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_object_semantics_and_conflicts() {
    let api = Api::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let (s, created) = api.call("POST", base, Some(cm("one", json!({"a": "1"})))).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let meta = &created["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(meta.get("generation").is_none(), "ConfigMaps have no generation");
    let rv1 = rv(&created);

    let got = api.ok("GET", &format!("{base}/one"), None).await;
    assert_eq!(got, created);
    let (s, v) = api.call("POST", base, Some(cm("one", json!({})))).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::CONFLICT, Some("AlreadyExists")));
    assert_eq!(v["message"], "configmaps \"one\" already exists");

    // PUT replaces; the resourceVersion is the store's mod revision and moves forward.
    let mut next = got.clone();
    next["data"] = json!({"new": "x"});
    let updated = api.ok("PUT", &format!("{base}/one"), Some(next.clone())).await;
    assert_eq!(updated["data"], json!({"new": "x"}));
    assert!(rv(&updated) > rv1);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    // The same body again carries the old resourceVersion: 409 Conflict.
    let (s, v) = api.call("PUT", &format!("{base}/one"), Some(next)).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::CONFLICT, Some("Conflict")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("the object has been modified"));
    // An unchanged PUT writes nothing.
    let same = api.ok("PUT", &format!("{base}/one"), Some(updated.clone())).await;
    assert_eq!(rv(&same), rv(&updated));

    // generateName.
    let gen = api.ok("POST", base, Some(json!({"metadata": {"generateName": "gen-"}}))).await;
    let name = gen["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Bad requests are clean Statuses.
    let (s, v) = api.call("PUT", &format!("{base}/one"), Some(cm("other", json!({})))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("does not match the name on the URL"));
    let (s, v) = api.call("POST", base, Some(json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = api.call("POST", base, Some(json!({"kind": "Pod", "metadata": {"name": "x"}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = api.call("POST", base, Some(json!({"metadata": {"name": "x", "namespace": "elsewhere"}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = api.call_ct("POST", base, Some("application/json"), Some(b"{not json".to_vec())).await;
    assert_eq!((s, v["kind"].as_str()), (StatusCode::BAD_REQUEST, Some("Status")));
    let (s, _) = api.call_ct("POST", base, Some("application/json"), Some(b"[1,2]".to_vec())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Protobuf is read (see `protobuf_*` below); a truncated one is a 400, other media types 415.
    let (s, v) = api.call_ct("POST", base, Some("application/vnd.kubernetes.protobuf"), Some(vec![0x6b, 0x38])).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")), "{v}");
    let (s, v) = api.call_ct("POST", base, Some("application/cbor"), Some(vec![0xa0])).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("UnsupportedMediaType")));
    assert!(v["message"].as_str().unwrap().contains("application/vnd.kubernetes.protobuf"), "{v}");
    let huge = format!("{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}", "x".repeat(3 * 1024 * 1024 + 10));
    let (s, v) = api.call_ct("POST", base, Some("application/json"), Some(huge.into_bytes())).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("RequestEntityTooLarge")));
    // Under the body limit but over the store's request limit: 413, not a 500.
    for size in [1600 * 1024, 2 * 1024 * 1024] {
        let big = json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(size)}});
        let (s, v) = api.call("POST", base, Some(big)).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{size}: {v}");
    }
    let mut other_uid = updated.clone();
    other_uid["metadata"]["uid"] = json!("someone-else");
    let (s, v) = api.call("PUT", &format!("{base}/one"), Some(other_uid)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = api.call("GET", "/api/v1/namespaces/default/widgets", None).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")));
    let (s, _) = api.call("GET", "/apis/apps/v1/namespaces/default/configmaps", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.call("GET", &format!("{base}/one?limit=abc"), None).await;
    assert_eq!(s, StatusCode::OK, "GET of one object ignores list parameters");
    let (s, _) = api.call("GET", &format!("{base}?limit=abc"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.call("PUT", base, Some(json!({}))).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    // DELETE with a stale precondition, then for real.
    let stale = json!({"preconditions": {"resourceVersion": rv1.to_string()}});
    let (s, v) = api.call("DELETE", &format!("{base}/one"), Some(stale)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = api.call("DELETE", &format!("{base}/one"), None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("Success")), "{v}");
    assert_eq!(v["details"]["uid"], created["metadata"]["uid"]);
    let (s, v) = api.call("GET", &format!("{base}/one"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["message"], "configmaps \"one\" not found");
    let (s, _) = api.call("DELETE", &format!("{base}/one"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_discovery() {
    let api = Api::start().await;
    for path in ["/api/v1/namespaces", "/api", "/version"] {
        let resp = api.raw(Request::builder().uri(path).body(Body::empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let bad = Request::builder().uri(path).header("authorization", "Bearer nope").body(Body::empty()).unwrap();
        assert_eq!(api.raw(bad).await.status(), StatusCode::UNAUTHORIZED);
    }
    for path in ["/healthz", "/livez", "/readyz"] {
        let resp = api.raw(Request::builder().uri(path).body(Body::empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let v = api.ok("GET", "/api", None).await;
    assert_eq!(v["versions"], json!(["v1"]));
    let v = api.ok("GET", "/apis", None).await;
    assert_eq!(v["groups"][0]["name"], "apps");
    assert_eq!(v["groups"][0]["preferredVersion"]["groupVersion"], "apps/v1");
    let v = api.ok("GET", "/api/v1", None).await;
    let names: Vec<&str> = v["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for want in ["namespaces", "namespaces/status", "namespaces/finalize", "pods", "pods/status", "configmaps", "secrets",
                 "services", "services/status", "serviceaccounts", "nodes", "nodes/status", "events", "pods/binding"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let pods = v["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
    assert_eq!((pods["kind"].as_str(), pods["namespaced"].as_bool()), (Some("Pod"), Some(true)));
    let v = api.ok("GET", "/apis/apps/v1", None).await;
    assert_eq!(v["resources"][0]["name"], "deployments");
    assert_eq!(api.ok("GET", "/apis/apps", None).await["kind"], "APIGroup");
    assert_eq!(api.ok("GET", "/version", None).await["major"], "1");
    let (s, _) = api.call("GET", "/apis/nosuch.example.com/v1", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Metrics (behind authentication, like everything but health).
    api.ok("POST", "/api/v1/namespaces/default/configmaps", Some(cm("m", json!({})))).await;
    api.call("GET", "/api/v1/namespaces/default/configmaps/none", None).await;
    api.call("GET", "/no/such/thing", None).await;
    let resp = api.raw(Request::builder().uri("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (s, text) = api.call("GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap();
    for want in [
        "apiserver_request_total{verb=\"create\",group=\"\",resource=\"configmaps\",code=\"201\"}",
        "apiserver_request_total{verb=\"get\",group=\"\",resource=\"configmaps\",code=\"404\"}",
        "apiserver_request_total{verb=\"get\",group=\"\",resource=\"other\",code=\"404\"}",
        "apiserver_request_duration_seconds_bucket{verb=\"list\",group=\"\",resource=\"namespaces\",le=\"+Inf\"}",
        "apiserver_registered_watchers ",
        "etcd_request_duration_seconds_count{operation=\"create\"}",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_generation_and_status_subresource() {
    let api = Api::start().await;
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "side:1"}
            ]}}
        },
        "status": {"replicas": 99}
    });
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let created = api.ok("POST", base, Some(d)).await;
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["spec"]["replicas"], 1, "defaulted");
    assert_eq!(created["status"], json!({}), "status is reset on create");

    // Strategic merge patch: containers merged by name, env merged by name.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]}]}}}});
    let (s, v) = api.call_ct("PATCH", &format!("{base}/web"), Some("application/strategic-merge-patch+json"), Some(smp.to_string().into_bytes())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cs = &v["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs.as_array().unwrap().len(), 2);
    assert_eq!(cs[0]["image"], "app:2");
    assert_eq!(cs[0]["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
    assert_eq!(cs[1]["name"], "side");
    assert_eq!(v["metadata"]["generation"], 2);

    // Merge patch replaces lists; status in the main resource is ignored.
    let v = api.ok("PATCH", &format!("{base}/web"), Some(json!({"spec": {"replicas": 3}, "status": {"replicas": 7}}))).await;
    assert_eq!((v["spec"]["replicas"].as_i64(), v["metadata"]["generation"].as_i64()), (Some(3), Some(3)));
    assert_eq!(v["status"], json!({}));
    // A metadata-only change does not bump the generation.
    let v = api.ok("PATCH", &format!("{base}/web"), Some(json!({"metadata": {"labels": {"x": "y"}}}))).await;
    assert_eq!(v["metadata"]["generation"], 3);

    // JSON patch.
    let jp = json!([{"op": "replace", "path": "/spec/replicas", "value": 5}, {"op": "test", "path": "/metadata/name", "value": "web"}]);
    let (s, v) = api.call_ct("PATCH", &format!("{base}/web"), Some("application/json-patch+json"), Some(jp.to_string().into_bytes())).await;
    assert_eq!((s, v["spec"]["replicas"].as_i64()), (StatusCode::OK, Some(5)), "{v}");
    let (s, _) = api.call_ct("PATCH", &format!("{base}/web"), Some("application/json-patch+json"), Some(b"[{\"op\":\"remove\",\"path\":\"/nope\"}]".to_vec())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.call_ct("PATCH", &format!("{base}/web"), Some("application/yaml"), Some(b"{}".to_vec())).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, _) = api.call("PATCH", &format!("{base}/missing"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A patch carrying a stale resourceVersion conflicts.
    let (s, _) = api.call("PATCH", &format!("{base}/web"), Some(json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}}))).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // The status subresource changes only status.
    let v = api.ok("PATCH", &format!("{base}/web/status"), Some(json!({"status": {"replicas": 5}, "spec": {"replicas": 9}}))).await;
    assert_eq!((v["status"]["replicas"].as_i64(), v["spec"]["replicas"].as_i64()), (Some(5), Some(5)));
    assert_eq!(v["metadata"]["generation"], 4);
    let mut full = v.clone();
    full["status"]["readyReplicas"] = json!(5);
    full["spec"]["paused"] = json!(true);
    let v = api.ok("PUT", &format!("{base}/web/status"), Some(full)).await;
    assert_eq!(v["status"]["readyReplicas"], 5);
    assert!(v["spec"].get("paused").is_none());
    assert_eq!(api.ok("GET", &format!("{base}/web/status"), None).await["status"]["readyReplicas"], 5);
    let (s, _) = api.call("PATCH", "/api/v1/namespaces/default/configmaps/x/status", Some(json!({}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "configmaps have no status subresource");

    // Immutable selector; pod spec is immutable except images.
    let (s, v) = api.call("PATCH", &format!("{base}/web"), Some(json!({"spec": {"selector": {"matchLabels": {"app": "other"}}, "template": {"metadata": {"labels": {"app": "other"}}}}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "spec.selector");
    let pods = "/api/v1/namespaces/default/pods";
    let p = api.ok("POST", pods, Some(pod("p"))).await;
    assert_eq!(p["spec"]["serviceAccountName"], "default", "ServiceAccount admission");
    assert_eq!((p["spec"]["restartPolicy"].as_str(), p["status"]["phase"].as_str()), (Some("Always"), Some("Pending")));
    let smp = json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}});
    let (s, v) = api.call_ct("PATCH", &format!("{pods}/p"), Some("application/strategic-merge-patch+json"), Some(smp.to_string().into_bytes())).await;
    assert_eq!((s, v["spec"]["containers"][0]["image"].as_str()), (StatusCode::OK, Some("busybox:1.37")), "{v}");
    let (s, v) = api.call("PATCH", &format!("{pods}/p"), Some(json!({"spec": {"restartPolicy": "Never"}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_gives_one_cause_per_field() {
    let api = Api::start().await;
    let pods = "/api/v1/namespaces/default/pods";
    let bad = json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "-bad-"}},
                     "spec": {"containers": [{"name": "c"}, {"name": "c", "image": "x", "ports": [{"containerPort": 70000}]}], "restartPolicy": "Sometimes"}});
    let (s, v) = api.call("POST", pods, Some(bad)).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid")), "{v}");
    let mut fields: Vec<String> = v["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap().to_string()).collect();
    fields.sort();
    assert_eq!(fields, ["metadata.labels[ok]", "metadata.name", "spec.containers[0].image", "spec.containers[1].name",
                        "spec.containers[1].ports[0].containerPort", "spec.restartPolicy"], "{v}");
    assert_eq!(v["details"]["kind"], "Pod");
    let (s, v) = api.call("POST", pods, Some(json!({"metadata": {"name": "p"}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // The pod defaults create `spec`; what is missing is its containers.
    assert_eq!(v["details"]["causes"][0], json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}));
    let (s, v) = api.call("POST", "/apis/apps/v1/namespaces/default/deployments", Some(json!({"metadata": {"name": "d"}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["details"]["causes"][0]["field"], "spec.selector", "{v}");
    let (s, v) = api.call("POST", "/api/v1/namespaces/default/services", Some(json!({"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "DNS-1035 for services: {v}");
    let svc = api.ok("POST", "/api/v1/namespaces/default/services", Some(json!({"metadata": {"name": "svc"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))).await;
    assert_eq!(svc["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
    let dep = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let (s, v) = api.call("POST", "/apis/apps/v1/namespaces/default/deployments", Some(dep)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["details"]["causes"][0]["field"], "spec.template.metadata.labels");
    let (s, v) = api.call("POST", "/api/v1/namespaces/default/secrets", Some(json!({"metadata": {"name": "s"}, "data": {"k": "not base64!"}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let secret = api.ok("POST", "/api/v1/namespaces/default/secrets", Some(json!({"metadata": {"name": "s"}, "stringData": {"k": "hi"}}))).await;
    assert_eq!((secret["data"]["k"].as_str(), secret["type"].as_str()), (Some("aGk="), Some("Opaque")));
    // Cluster-scoped kinds and the other core kinds work through the same table.
    api.ok("POST", "/api/v1/nodes", Some(json!({"metadata": {"name": "n1"}, "status": {"capacity": {"cpu": "2"}}}))).await;
    assert_eq!(api.ok("GET", "/api/v1/nodes/n1", None).await["status"]["capacity"]["cpu"], "2");
    api.ok("POST", "/api/v1/namespaces/default/serviceaccounts", Some(json!({"metadata": {"name": "sa"}}))).await;
    api.ok("POST", "/api/v1/namespaces/default/events", Some(json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started"}))).await;
    // Events live for an hour: their key is attached to a store lease.
    let mut etcd = etcd_client::Client::connect([&api.endpoint], None).await.unwrap();
    let kv = etcd.get("/registry/events/default/e", None).await.unwrap();
    let lease = kv.kvs()[0].lease();
    assert!(lease != 0);
    assert!(etcd.lease_time_to_live(lease, None).await.unwrap().ttl() > 3600);
    assert_eq!(etcd.get("/registry/serviceaccounts/default/sa", None).await.unwrap().kvs()[0].lease(), 0);
    let evs = api.ok("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp,reason%3DStarted", None).await;
    assert_eq!(evs["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_and_namespace_lifecycle() {
    let api = Api::start().await;
    let (s, v) = api.call("POST", "/api/v1/namespaces/nowhere/configmaps", Some(cm("c", json!({})))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["message"], "namespaces \"nowhere\" not found");

    api.create_ns("app").await;
    let base = "/api/v1/namespaces/app/configmaps";
    let mut obj = cm("held", json!({}));
    obj["metadata"]["finalizers"] = json!(["example.com/hold", "example.com/other"]);
    api.ok("POST", base, Some(obj)).await;
    let (s, v) = api.call("DELETE", &format!("{base}/held"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ts = v["metadata"]["deletionTimestamp"].clone();
    assert!(ts.is_string());
    // A second DELETE changes nothing; the object is still readable.
    let (s, v) = api.call("DELETE", &format!("{base}/held"), None).await;
    assert_eq!((s, &v["metadata"]["deletionTimestamp"]), (StatusCode::OK, &ts));
    // Updates cannot clear deletionTimestamp.
    let v = api.ok("PATCH", &format!("{base}/held"), Some(json!({"metadata": {"deletionTimestamp": null, "finalizers": ["example.com/other"]}}))).await;
    assert_eq!(v["metadata"]["deletionTimestamp"], ts);
    // Removing the last finalizer removes the object.
    api.ok("PATCH", &format!("{base}/held"), Some(json!({"metadata": {"finalizers": null}}))).await;
    let (s, _) = api.call("GET", &format!("{base}/held"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Deleting a namespace makes it Terminating; nothing new may be created in it.
    let (s, v) = api.call("DELETE", "/api/v1/namespaces/app", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"]["phase"], "Terminating");
    let (s, v) = api.call("POST", base, Some(cm("late", json!({})))).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")), "{v}");
    // The namespace controller's finalize call releases it.
    let mut ns = api.ok("GET", "/api/v1/namespaces/app", None).await;
    ns["spec"]["finalizers"] = json!([]);
    api.ok("PUT", "/api/v1/namespaces/app/finalize", Some(ns)).await;
    let (s, _) = api.call("GET", "/api/v1/namespaces/app", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_selectors_and_pagination() {
    let api = Api::start().await;
    api.create_ns("other").await;
    let base = "/api/v1/namespaces/default/configmaps";
    for i in 0..7 {
        let tier = if i % 2 == 0 { "fe" } else { "be" };
        api.ok("POST", base, Some(cm(&format!("cm-{i}"), json!({"app": "shop", "tier": tier})))).await;
    }
    api.ok("POST", "/api/v1/namespaces/other/configmaps", Some(cm("elsewhere", json!({"app": "shop"})))).await;
    let names = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    let all = api.ok("GET", base, None).await;
    assert_eq!(all["kind"], "ConfigMapList");
    assert_eq!(names(&all).len(), 7);
    assert_eq!(names(&api.ok("GET", "/api/v1/configmaps", None).await).len(), 8, "across namespaces");

    // Pages of 3 at one revision, even with a write in between.
    let p1 = api.ok("GET", &format!("{base}?limit=3"), None).await;
    let list_rv = p1["metadata"]["resourceVersion"].clone();
    assert_eq!(names(&p1), ["cm-0", "cm-1", "cm-2"]);
    api.ok("POST", base, Some(cm("cm-9", json!({})))).await;
    let token = p1["metadata"]["continue"].as_str().unwrap();
    let p2 = api.ok("GET", &format!("{base}?limit=3&continue={token}"), None).await;
    assert_eq!(names(&p2), ["cm-3", "cm-4", "cm-5"]);
    assert_eq!(p2["metadata"]["resourceVersion"], list_rv);
    let token = p2["metadata"]["continue"].as_str().unwrap();
    let p3 = api.ok("GET", &format!("{base}?limit=3&continue={token}"), None).await;
    assert_eq!(names(&p3), ["cm-6"], "cm-9 was written after the list's revision");
    assert!(p3["metadata"].get("continue").is_none());
    let (s, _) = api.call("GET", &format!("{base}?limit=3&continue=garbage"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Selectors, also combined with pagination.
    let sel = |q: &str| format!("{base}?labelSelector={}", q.replace(' ', "%20").replace('!', "%21").replace('=', "%3D").replace(',', "%2C"));
    assert_eq!(names(&api.ok("GET", &sel("tier=fe"), None).await), ["cm-0", "cm-2", "cm-4", "cm-6"]);
    assert_eq!(names(&api.ok("GET", &sel("tier!=fe,app"), None).await), ["cm-1", "cm-3", "cm-5"]);
    assert_eq!(names(&api.ok("GET", &sel("tier in (be),app notin (x)"), None).await), ["cm-1", "cm-3", "cm-5"]);
    assert_eq!(names(&api.ok("GET", &sel("!tier"), None).await), ["cm-9"]);
    let page = api.ok("GET", &format!("{}&limit=2", sel("tier=fe")), None).await;
    assert_eq!(names(&page), ["cm-0", "cm-2"]);
    let page = api.ok("GET", &format!("{}&limit=2&continue={}", sel("tier=fe"), page["metadata"]["continue"].as_str().unwrap()), None).await;
    assert_eq!(names(&page), ["cm-4", "cm-6"]);
    let (s, _) = api.call("GET", &sel("tier in fe"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(names(&api.ok("GET", &format!("{base}?fieldSelector=metadata.name%3Dcm-3"), None).await), ["cm-3"]);
    let (s, v) = api.call("GET", &format!("{base}?fieldSelector=spec.nodeName%3Dn1"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Pods: spec.nodeName and status.phase.
    let pods = "/api/v1/namespaces/default/pods";
    api.ok("POST", pods, Some(pod("unscheduled"))).await;
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("n1");
    api.ok("POST", pods, Some(bound)).await;
    assert_eq!(names(&api.ok("GET", &format!("{pods}?fieldSelector=spec.nodeName%3Dn1"), None).await), ["bound"]);
    assert_eq!(names(&api.ok("GET", &format!("{pods}?fieldSelector=spec.nodeName%3D"), None).await), ["unscheduled"]);
    api.ok("PATCH", &format!("{pods}/bound/status"), Some(json!({"status": {"phase": "Running"}}))).await;
    assert_eq!(names(&api.ok("GET", &format!("{pods}?fieldSelector=status.phase%3DRunning"), None).await), ["bound"]);
    assert_eq!(names(&api.ok("GET", "/api/v1/pods?fieldSelector=status.phase%21%3DRunning", None).await), ["unscheduled"]);

    // Exact reads at an old revision, and 410 once it is compacted.
    let exact = api.ok("GET", &format!("{base}?resourceVersion={}&resourceVersionMatch=Exact", list_rv.as_str().unwrap()), None).await;
    assert_eq!(names(&exact).len(), 7);
    let p1 = api.ok("GET", &format!("{base}?limit=2"), None).await;
    let mut etcd = etcd_client::Client::connect([&api.endpoint], None).await.unwrap();
    api.ok("POST", base, Some(cm("after", json!({})))).await;
    let head = etcd.get("x", None).await.unwrap().header().unwrap().revision();
    etcd.compact(head, None).await.unwrap();
    let (s, v) = api.call("GET", &format!("{base}?limit=2&continue={}", p1["metadata"]["continue"].as_str().unwrap()), None).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::GONE, Some("Expired")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_filter_bookmark_and_expire() {
    let api = Api::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let a = api.ok("POST", base, Some(cm("a", json!({"app": "x"})))).await;
    let start = rv(&a);
    api.ok("PATCH", &format!("{base}/a"), Some(json!({"data": {"k": "2"}}))).await;
    api.ok("POST", base, Some(cm("b", json!({"app": "y"})))).await;
    api.ok("DELETE", &format!("{base}/a"), None).await;

    // Resume after `start`: exactly the later changes, in order, with their revisions.
    let (s, evs) = api.watch(&format!("{base}?watch=true&resourceVersion={start}"), 3, Duration::from_secs(10)).await;
    assert_eq!(s, StatusCode::OK);
    let got: Vec<(String, String)> = evs.iter().map(|e| (e["type"].as_str().unwrap().into(), e["object"]["metadata"]["name"].as_str().unwrap().into())).collect();
    assert_eq!(got, [("MODIFIED".into(), "a".into()), ("ADDED".into(), "b".into()), ("DELETED".into(), "a".into())]);
    let rvs: Vec<i64> = evs.iter().map(|e| rv(&e["object"])).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");

    // No resourceVersion: the current state as ADDED first; selectors filter; timeoutSeconds ends it.
    let began = std::time::Instant::now();
    let (_, evs) = api.watch(&format!("{base}?watch=1&labelSelector=app%3Dy&timeoutSeconds=1"), 10, Duration::from_secs(10)).await;
    assert_eq!(evs.len(), 1);
    assert_eq!((evs[0]["type"].as_str(), evs[0]["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("b")));
    assert!(began.elapsed() < Duration::from_secs(5));

    // An object leaving the selection is DELETED for that watcher.
    let head: i64 = api.ok("GET", base, None).await["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    api.ok("PATCH", &format!("{base}/b"), Some(json!({"metadata": {"labels": {"app": "z"}}}))).await;
    let (_, evs) = api.watch(&format!("{base}?watch=true&labelSelector=app%3Dy&resourceVersion={head}"), 1, Duration::from_secs(10)).await;
    assert_eq!(evs[0]["type"], "DELETED");

    // Bookmarks carry only a resourceVersion.
    let (_, evs) = api.watch(&format!("{base}?watch=true&resourceVersion={head}&allowWatchBookmarks=true"), 2, Duration::from_secs(10)).await;
    let bm = evs.iter().find(|e| e["type"] == "BOOKMARK").expect("a bookmark");
    assert_eq!(bm["object"]["kind"], "ConfigMap");
    assert!(bm["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap() > head);

    // Watch-list (kubectl delete --wait): initial events, then the initial-events-end bookmark.
    let (_, evs) = api.watch(&format!("{base}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"), 2, Duration::from_secs(10)).await;
    assert_eq!(evs[0]["type"], "ADDED");
    assert_eq!(evs[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    let (s, _) = api.call("GET", &format!("{base}?watch=true&sendInitialEvents=true"), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api.call("GET", &format!("{base}?watch=true&resourceVersion=abc"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A compacted resourceVersion: the stream starts, then ERROR with a 410 Status.
    let mut etcd = etcd_client::Client::connect([&api.endpoint], None).await.unwrap();
    let now = etcd.get("x", None).await.unwrap().header().unwrap().revision();
    etcd.compact(now, None).await.unwrap();
    let (s, evs) = api.watch(&format!("{base}?watch=true&resourceVersion={start}"), 1, Duration::from_secs(10)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(evs[0]["type"], "ERROR");
    assert_eq!((evs[0]["object"]["code"].as_i64(), evs[0]["object"]["reason"].as_str()), (Some(410), Some("Expired")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_versions_from_the_future_and_legacy_watch_paths() {
    let api = Api::start().await;
    let created = api.ok("POST", "/api/v1/namespaces/default/configmaps", Some(cm("a", json!({})))).await;
    let at = rv(&created);
    let future = at + 1000;
    let too_large = |s: StatusCode, v: &Value| {
        assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
        assert_eq!(v["reason"], "Timeout", "{v}");
        assert_eq!(v["details"]["causes"][0]["reason"], "ResourceVersionTooLarge", "{v}");
        assert!(v["message"].as_str().unwrap().starts_with(&format!("Too large resource version: {future}, current: ")), "{v}");
    };
    // GET: a reached revision (or none) reads the object; a future one is 504, not the object.
    for q in ["", "?resourceVersion=0", &format!("?resourceVersion={at}")] {
        let v = api.ok("GET", &format!("/api/v1/namespaces/default/configmaps/a{q}"), None).await;
        assert_eq!(rv(&v), at);
    }
    let (s, v) = api.call("GET", &format!("/api/v1/namespaces/default/configmaps/a?resourceVersion={future}"), None).await;
    too_large(s, &v);
    // LIST: NotOlderThan (explicit or implied) and Exact; Exact used to reach the edge as a 500.
    for q in [format!("resourceVersion={future}"), format!("resourceVersion={future}&resourceVersionMatch=NotOlderThan"),
              format!("resourceVersion={future}&resourceVersionMatch=Exact")] {
        let (s, v) = api.call("GET", &format!("/api/v1/namespaces/default/configmaps?{q}"), None).await;
        too_large(s, &v);
    }
    let list = api.ok("GET", &format!("/api/v1/namespaces/default/configmaps?resourceVersion={at}"), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // WATCH from a future revision is refused before the stream starts.
    let (s, v) = api.call("GET", &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={future}"), None).await;
    too_large(s, &v);

    // /api/v1/watch/...: the collection, and one object by name.
    api.ok("POST", "/api/v1/namespaces/default/configmaps", Some(cm("b", json!({})))).await;
    let path = format!("/api/v1/watch/namespaces/default/configmaps?resourceVersion={at}");
    let (s, events) = api.watch(&path, 1, Duration::from_secs(10)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((events[0]["type"].as_str(), events[0]["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("b")));
    api.ok("PATCH", "/api/v1/namespaces/default/configmaps/b", Some(json!({"data": {"k": "1"}}))).await;
    api.ok("PATCH", "/api/v1/namespaces/default/configmaps/a", Some(json!({"data": {"k": "2"}}))).await;
    let (_, events) = api.watch(&format!("/api/v1/watch/namespaces/default/configmaps/a?resourceVersion={at}"), 1, Duration::from_secs(10)).await;
    assert_eq!(events[0]["object"]["metadata"]["name"], "a", "only the named object: {events:?}");
    assert_eq!(events[0]["object"]["data"]["k"], "2");
    let (s, _) = api.call("POST", "/api/v1/watch/namespaces/default/configmaps", Some(cm("c", json!({})))).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_binding_and_delete_collection() {
    let api = Api::start().await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let d = json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
        "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    api.ok("POST", deps, Some(d)).await;
    let scale = api.ok("GET", &format!("{deps}/web/scale"), None).await;
    assert_eq!((scale["kind"].as_str(), scale["apiVersion"].as_str()), (Some("Scale"), Some("autoscaling/v1")));
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=web,tier");
    // kubectl scale: a merge patch of the Scale.
    let v = api.ok("PATCH", &format!("{deps}/web/scale"), Some(json!({"spec": {"replicas": 4}}))).await;
    assert_eq!(v["spec"]["replicas"], 4);
    let dep = api.ok("GET", &format!("{deps}/web"), None).await;
    assert_eq!((dep["spec"]["replicas"].as_i64(), dep["metadata"]["generation"].as_i64()), (Some(4), Some(2)));
    let mut put = v.clone();
    put["spec"]["replicas"] = json!(2);
    assert_eq!(api.ok("PUT", &format!("{deps}/web/scale"), Some(put.clone())).await["spec"]["replicas"], 2);
    let (s, _) = api.call("PUT", &format!("{deps}/web/scale"), Some(put)).await;
    assert_eq!(s, StatusCode::CONFLICT, "the Scale's resourceVersion is a precondition");
    let (s, _) = api.call("PATCH", &format!("{deps}/web/scale"), Some(json!({"spec": {"replicas": -1}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api.call("GET", "/api/v1/namespaces/default/pods/p/scale", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The scheduler's binding sets spec.nodeName once.
    let pods = "/api/v1/namespaces/default/pods";
    api.ok("POST", pods, Some(pod("p"))).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let (s, v) = api.call("POST", &format!("{pods}/p/binding"), Some(binding.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let p = api.ok("GET", &format!("{pods}/p"), None).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
    let (s, v) = api.call("POST", &format!("{pods}/p/binding"), Some(binding)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _) = api.call("POST", &format!("{pods}/p/binding"), Some(json!({"target": {}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // deletecollection with a selector.
    let cms = "/api/v1/namespaces/default/configmaps";
    for (n, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        api.ok("POST", cms, Some(cm(n, json!({"app": app})))).await;
    }
    let v = api.ok("DELETE", &format!("{cms}?labelSelector=app%3Dx"), None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let left = api.ok("GET", cms, None).await;
    assert_eq!(left["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect::<Vec<_>>(), ["c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_pod_deletion() {
    let api = Api::start().await;
    let pods = "/api/v1/namespaces/default/pods";
    // Not on a node: gone at once.
    api.ok("POST", pods, Some(pod("pending"))).await;
    let v = api.ok("DELETE", &format!("{pods}/pending"), None).await;
    assert_eq!(v["metadata"]["name"], "pending", "pods answer the deleted object");
    assert_eq!(api.call("GET", &format!("{pods}/pending"), None).await.0, StatusCode::NOT_FOUND);
    // On a node: marked with its grace period; the kubelet's status updates do not remove it.
    let mut p = pod("running");
    p["spec"]["nodeName"] = json!("n1");
    p["spec"]["terminationGracePeriodSeconds"] = json!(20);
    api.ok("POST", pods, Some(p)).await;
    let v = api.ok("DELETE", &format!("{pods}/running"), None).await;
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 20);
    let deadline = v["metadata"]["deletionTimestamp"].as_str().unwrap().to_string();
    assert!(deadline.as_str() > v["metadata"]["creationTimestamp"].as_str().unwrap());
    api.ok("PATCH", &format!("{pods}/running/status"), Some(json!({"status": {"phase": "Running"}}))).await;
    // A longer grace period changes nothing; a shorter one shortens it.
    let v = api.ok("DELETE", &format!("{pods}/running?gracePeriodSeconds=60"), None).await;
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 20);
    let v = api.ok("DELETE", &format!("{pods}/running"), Some(json!({"kind": "DeleteOptions", "gracePeriodSeconds": 5}))).await;
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 5);
    // The kubelet's final delete.
    api.ok("DELETE", &format!("{pods}/running?gracePeriodSeconds=0"), None).await;
    assert_eq!(api.call("GET", &format!("{pods}/running"), None).await.0, StatusCode::NOT_FOUND);
    let (s, _) = api.call("DELETE", &format!("{pods}/x?gracePeriodSeconds=soon"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// A pod template labelled `app=<app>`, with a restart policy a Job accepts.
fn template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

/// One row per kind added for issue 6: where it lives, a valid object, and an invalid one with
/// the field its 422 must name.
struct KindCase {
    /// The collection: `/apis/batch/v1/namespaces/default/jobs`.
    collection: &'static str,
    valid: Value,
    invalid: Value,
    invalid_field: &'static str,
}

fn kind_cases() -> Vec<KindCase> {
    let c = |collection: &'static str, valid: Value, invalid: Value, invalid_field: &'static str| KindCase {
        collection,
        valid,
        invalid,
        invalid_field,
    };
    vec![
        c("/api/v1/namespaces/default/endpoints",
          json!({"metadata": {"name": "ep"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
          json!({"metadata": {"name": "bad"}, "subsets": [{"ports": [{"port": 0}]}]}),
          "subsets[0].ports[0].port"),
        c("/api/v1/persistentvolumes",
          json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/pv"}}}),
          json!({"metadata": {"name": "bad"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Keep"}}),
          "spec.persistentVolumeReclaimPolicy"),
        c("/api/v1/namespaces/default/persistentvolumeclaims",
          json!({"metadata": {"name": "pvc"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "standard"}}),
          json!({"metadata": {"name": "bad"}, "spec": {"accessModes": ["Sometimes"], "resources": {"requests": {"storage": "1Gi"}}}}),
          "spec.accessModes[0]"),
        c("/api/v1/namespaces/default/resourcequotas",
          json!({"metadata": {"name": "rq"}, "spec": {"hard": {"pods": "10", "requests.cpu": "4"}}}),
          json!({"metadata": {"name": "bad"}, "spec": {"scopes": ["Nope"]}}),
          "spec.scopes[0]"),
        c("/api/v1/namespaces/default/limitranges",
          json!({"metadata": {"name": "lr"}, "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}}),
          json!({"metadata": {"name": "bad"}, "spec": {"limits": [{"type": "Node"}]}}),
          "spec.limits[0].type"),
        c("/api/v1/namespaces/default/replicationcontrollers",
          json!({"metadata": {"name": "rc"}, "spec": {"replicas": 2, "selector": {"app": "rc"}, "template": template("rc")}}),
          json!({"metadata": {"name": "bad"}, "spec": {"replicas": -1, "template": template("rc")}}),
          "spec.replicas"),
        c("/api/v1/namespaces/default/podtemplates",
          json!({"metadata": {"name": "pt"}, "template": template("pt")}),
          json!({"metadata": {"name": "bad"}, "template": {"spec": {"containers": []}}}),
          "template.spec.containers"),
        c("/apis/apps/v1/namespaces/default/replicasets",
          json!({"metadata": {"name": "rs"}, "spec": {"selector": {"matchLabels": {"app": "rs"}}, "template": template("rs")}}),
          json!({"metadata": {"name": "bad"}, "spec": {"template": template("rs")}}),
          "spec.selector"),
        c("/apis/apps/v1/namespaces/default/statefulsets",
          json!({"metadata": {"name": "sts"}, "spec": {"serviceName": "sts", "selector": {"matchLabels": {"app": "sts"}}, "template": template("sts")}}),
          json!({"metadata": {"name": "bad"}, "spec": {"podManagementPolicy": "Random", "selector": {"matchLabels": {"app": "sts"}}, "template": template("sts")}}),
          "spec.podManagementPolicy"),
        c("/apis/apps/v1/namespaces/default/daemonsets",
          json!({"metadata": {"name": "ds"}, "spec": {"selector": {"matchLabels": {"app": "ds"}}, "template": template("ds")}}),
          json!({"metadata": {"name": "bad"}, "spec": {"updateStrategy": {"type": "Sometimes"}, "selector": {"matchLabels": {"app": "ds"}}, "template": template("ds")}}),
          "spec.updateStrategy.type"),
        c("/apis/apps/v1/namespaces/default/controllerrevisions",
          json!({"metadata": {"name": "cr"}, "revision": 1, "data": {"spec": {"template": template("cr")}}}),
          json!({"metadata": {"name": "bad"}, "revision": -1}),
          "revision"),
        c("/apis/batch/v1/namespaces/default/jobs",
          json!({"metadata": {"name": "job"}, "spec": {"template": template("job")}}),
          json!({"metadata": {"name": "bad"}, "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}),
          "spec.template.spec.restartPolicy"),
        c("/apis/batch/v1/namespaces/default/cronjobs",
          json!({"metadata": {"name": "cj"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template("cj")}}}}),
          json!({"metadata": {"name": "bad"}, "spec": {"schedule": "every minute", "jobTemplate": {"spec": {"template": template("cj")}}}}),
          "spec.schedule"),
        c("/apis/coordination.k8s.io/v1/namespaces/default/leases",
          json!({"metadata": {"name": "lease"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
          json!({"metadata": {"name": "bad"}, "spec": {"leaseDurationSeconds": 0}}),
          "spec.leaseDurationSeconds"),
        c("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
          json!({"metadata": {"name": "eps"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}),
          json!({"metadata": {"name": "bad"}, "addressType": "IPv5", "endpoints": []}),
          "addressType"),
        c("/apis/networking.k8s.io/v1/namespaces/default/ingresses",
          json!({"metadata": {"name": "ing"}, "spec": {"rules": [{"host": "a.example.com", "http": {"paths": [
              {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
          json!({"metadata": {"name": "bad"}, "spec": {"rules": [{"http": {"paths": [
              {"path": "/", "pathType": "Glob", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
          "spec.rules[0].http.paths[0].pathType"),
        c("/apis/policy/v1/namespaces/default/poddisruptionbudgets",
          json!({"metadata": {"name": "pdb"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
          json!({"metadata": {"name": "bad"}, "spec": {"minAvailable": 1, "maxUnavailable": "50%"}}),
          "spec"),
        c("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
          json!({"metadata": {"name": "hpa"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
              "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
          json!({"metadata": {"name": "bad"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 5, "maxReplicas": 3}}),
          "spec.maxReplicas"),
    ]
}

fn cause_fields(v: &Value) -> Vec<String> {
    v["details"]["causes"].as_array().map(|cs| cs.iter().filter_map(|c| c["field"].as_str().map(String::from)).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_added_kind_round_trips_and_rejects_invalid_objects() {
    let api = Api::start().await;
    for case in kind_cases() {
        let coll = case.collection;
        let name = case.valid["metadata"]["name"].as_str().unwrap().to_string();
        let created = api.ok("POST", coll, Some(case.valid.clone())).await;
        assert_eq!(created["metadata"]["name"], name.as_str(), "{coll}");
        let kind = created["kind"].as_str().unwrap_or_default().to_string();
        assert!(!kind.is_empty(), "{coll}: {created}");
        let item = format!("{coll}/{name}");
        let mut got = api.ok("GET", &item, None).await;
        assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"], "{coll}");
        let list = api.ok("GET", coll, None).await;
        assert_eq!(list["kind"], format!("{kind}List"), "{coll}");
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{coll}: {list}");
        got["metadata"]["labels"] = json!({"updated": "yes"});
        let updated = api.ok("PUT", &item, Some(got)).await;
        assert_eq!(updated["metadata"]["labels"]["updated"], "yes", "{coll}");
        assert!(rv(&updated) > rv(&created), "{coll}");

        let (s, v) = api.call("POST", coll, Some(case.invalid.clone())).await;
        assert_eq!((s, v["reason"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid")), "{coll}: {v}");
        assert!(cause_fields(&v).iter().any(|f| f == case.invalid_field), "{coll}: want {} in {v}", case.invalid_field);
        assert_eq!(v["details"]["kind"], kind.as_str(), "{coll}");

        api.ok("DELETE", &item, None).await;
        let (s, _) = api.call("GET", &item, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{coll}");

        // Wrong shapes where the strategies look are 422s, never a 500 or a panic.
        for junk in [json!("x"), json!(5), json!([1]), json!({"selector": 5, "template": "t", "jobTemplate": [], "minReplicas": "a"})] {
            let body = json!({"metadata": {"name": "junk"}, "spec": junk.clone(), "template": junk.clone(), "subsets": junk.clone()});
            let (s, v) = api.call("POST", coll, Some(body)).await;
            assert!(s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::CREATED, "{coll} {junk}: {s} {v}");
            if s == StatusCode::CREATED {
                api.ok("DELETE", &format!("{coll}/junk"), None).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_selectors_must_match_their_templates() {
    let api = Api::start().await;
    let mismatched = |spec: Value| json!({"metadata": {"name": "w"}, "spec": spec});
    let cases = [
        ("/api/v1/namespaces/default/replicationcontrollers", mismatched(json!({"selector": {"app": "a"}, "template": template("b")}))),
        ("/apis/apps/v1/namespaces/default/replicasets", mismatched(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template("b")}))),
        ("/apis/apps/v1/namespaces/default/statefulsets", mismatched(json!({"serviceName": "s", "selector": {"matchLabels": {"app": "a"}}, "template": template("b")}))),
        ("/apis/apps/v1/namespaces/default/daemonsets", mismatched(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template("b")}))),
        ("/apis/batch/v1/namespaces/default/jobs", mismatched(json!({"manualSelector": true, "selector": {"matchLabels": {"app": "a"}}, "template": template("b")}))),
    ];
    for (coll, obj) in cases {
        let (s, v) = api.call("POST", coll, Some(obj)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{coll}: {v}");
        assert!(cause_fields(&v).iter().any(|f| f == "spec.template.metadata.labels"), "{coll}: {v}");
    }
    let (s, v) = api.call("POST", "/apis/apps/v1/namespaces/default/daemonsets", Some(mismatched(json!({"selector": {}, "template": template("b")})))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(cause_fields(&v).iter().any(|f| f == "spec.selector"), "{v}");
    // A ReplicationController without a selector selects its template's labels.
    let rc = api.ok("POST", "/api/v1/namespaces/default/replicationcontrollers", Some(json!({"metadata": {"name": "rc"}, "spec": {"template": template("rc")}}))).await;
    assert_eq!((rc["spec"]["selector"].clone(), rc["spec"]["replicas"].as_i64()), (json!({"app": "rc"}), Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_kinds_defaults_immutable_fields_generation_and_scale() {
    let api = Api::start().await;
    // Jobs: generated selector, defaults, status reset, immutable selector and template.
    let jobs = "/apis/batch/v1/namespaces/default/jobs";
    let job = api.ok("POST", jobs, Some(json!({"metadata": {"name": "j"}, "spec": {"template": template("j")}, "status": {"active": 3}}))).await;
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    assert_eq!(job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"], "j");
    assert_eq!((job["spec"]["backoffLimit"].as_i64(), job["spec"]["completions"].as_i64(), job["spec"]["parallelism"].as_i64()), (Some(6), Some(1), Some(1)));
    assert_eq!(job["status"], json!({}));
    assert_eq!(job["metadata"]["generation"], 1);
    let (s, v) = api.call("PATCH", &format!("{jobs}/j"), Some(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "other"}]}}}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cause_fields(&v), ["spec.template"], "{v}");
    let v = api.ok("PATCH", &format!("{jobs}/j/status"), Some(json!({"status": {"active": 1}}))).await;
    assert_eq!(v["status"]["active"], 1);
    let v = api.ok("PATCH", &format!("{jobs}/j"), Some(json!({"spec": {"backoffLimit": 2}}))).await;
    assert_eq!((v["metadata"]["generation"].as_i64(), v["status"]["active"].as_i64()), (Some(2), Some(1)));
    let queue = api.ok("POST", jobs, Some(json!({"metadata": {"name": "q"}, "spec": {"parallelism": 3, "template": template("q")}}))).await;
    assert!(queue["spec"].get("completions").is_none(), "a work queue keeps completions unset: {queue}");

    // StatefulSets: serviceName and selector are immutable; generation counts spec changes.
    let sts = "/apis/apps/v1/namespaces/default/statefulsets";
    api.ok("POST", sts, Some(json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}}))).await;
    let (s, v) = api.call("PATCH", &format!("{sts}/db"), Some(json!({"spec": {"serviceName": "other", "selector": {"matchLabels": {"app": "db", "x": "y"}}}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = cause_fields(&v);
    fields.sort();
    assert!(fields.contains(&"spec.serviceName".to_string()) && fields.contains(&"spec.selector".to_string()), "{v}");
    let v = api.ok("PATCH", &format!("{sts}/db/scale"), Some(json!({"spec": {"replicas": 3}}))).await;
    assert_eq!((v["spec"]["replicas"].as_i64(), v["status"]["selector"].as_str()), (Some(3), Some("app=db")));
    let db = api.ok("GET", &format!("{sts}/db"), None).await;
    assert_eq!((db["spec"]["replicas"].as_i64(), db["metadata"]["generation"].as_i64()), (Some(3), Some(2)));
    assert_eq!(db["spec"]["podManagementPolicy"], "OrderedReady");

    // PVCs: the storage class is immutable, the requested size is not.
    let pvcs = "/api/v1/namespaces/default/persistentvolumeclaims";
    api.ok("POST", pvcs, Some(json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast"}}))).await;
    let (s, v) = api.call("PATCH", &format!("{pvcs}/data"), Some(json!({"spec": {"storageClassName": "slow"}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cause_fields(&v), ["spec.storageClassName"], "{v}");
    api.ok("PATCH", &format!("{pvcs}/data"), Some(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}))).await;

    // Scale of ReplicationControllers (a plain label-map selector) and ReplicaSets.
    let rcs = "/api/v1/namespaces/default/replicationcontrollers";
    api.ok("POST", rcs, Some(json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "rc"}, "template": template("rc")}}))).await;
    let v = api.ok("GET", &format!("{rcs}/rc/scale"), None).await;
    assert_eq!((v["spec"]["replicas"].as_i64(), v["status"]["selector"].as_str()), (Some(1), Some("app=rc")));
    let rss = "/apis/apps/v1/namespaces/default/replicasets";
    api.ok("POST", rss, Some(json!({"metadata": {"name": "rs"}, "spec": {"selector": {"matchLabels": {"app": "rs"}}, "template": template("rs")}}))).await;
    assert_eq!(api.ok("PATCH", &format!("{rss}/rs/scale"), Some(json!({"spec": {"replicas": 5}}))).await["spec"]["replicas"], 5);
    let (s, _) = api.call("GET", "/apis/apps/v1/namespaces/default/daemonsets/x/scale", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // CronJob and HPA defaults; cluster-scoped PersistentVolumes.
    let cj = api.ok("POST", "/apis/batch/v1/namespaces/default/cronjobs", Some(json!({"metadata": {"name": "cj"}, "spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": template("cj")}}}}))).await;
    assert_eq!((cj["spec"]["concurrencyPolicy"].as_str(), cj["spec"]["successfulJobsHistoryLimit"].as_i64()), (Some("Allow"), Some(3)));
    let hpa = api.ok("POST", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
        Some(json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4}}))).await;
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    // Counters kube-apiserver always serializes start at 0 (typed clients require them).
    assert_eq!(hpa["status"], json!({"desiredReplicas": 0}));
    let pv = api.ok("POST", "/api/v1/persistentvolumes", Some(json!({"metadata": {"name": "pv1", "namespace": "default"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}))).await;
    assert!(pv["metadata"].get("namespace").is_none_or(Value::is_null), "{pv}");
    let mut etcd = etcd_client::Client::connect([&api.endpoint], None).await.unwrap();
    assert_eq!(etcd.get("/registry/persistentvolumes/pv1", None).await.unwrap().kvs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_every_added_kind() {
    let api = Api::start().await;
    let want: &[(&str, &[&str])] = &[
        ("/api/v1", &["endpoints", "persistentvolumes", "persistentvolumes/status", "persistentvolumeclaims", "persistentvolumeclaims/status",
                      "resourcequotas", "resourcequotas/status", "limitranges", "replicationcontrollers", "replicationcontrollers/status",
                      "replicationcontrollers/scale", "podtemplates"]),
        ("/apis/apps/v1", &["deployments", "replicasets", "replicasets/status", "replicasets/scale", "statefulsets", "statefulsets/status",
                            "statefulsets/scale", "daemonsets", "daemonsets/status", "controllerrevisions"]),
        ("/apis/batch/v1", &["jobs", "jobs/status", "cronjobs", "cronjobs/status"]),
        ("/apis/coordination.k8s.io/v1", &["leases"]),
        ("/apis/discovery.k8s.io/v1", &["endpointslices"]),
        ("/apis/networking.k8s.io/v1", &["ingresses", "ingresses/status"]),
        ("/apis/policy/v1", &["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        ("/apis/autoscaling/v2", &["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    ];
    for (path, resources) in want {
        let v = api.ok("GET", path, None).await;
        let names: Vec<&str> = v["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        for r in *resources {
            assert!(names.contains(r), "{r} missing from {path}: {names:?}");
        }
    }
    let pv = api.ok("GET", "/api/v1", None).await["resources"].as_array().unwrap().iter().find(|r| r["name"] == "persistentvolumes").cloned().unwrap();
    assert_eq!((pv["namespaced"].as_bool(), pv["shortNames"].clone()), (Some(false), json!(["pv"])));
    let groups = api.ok("GET", "/apis", None).await;
    let gvs: Vec<&str> = groups["groups"].as_array().unwrap().iter().map(|g| g["preferredVersion"]["groupVersion"].as_str().unwrap()).collect();
    assert_eq!(gvs, ["apps/v1", "autoscaling/v2", "batch/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1", "networking.k8s.io/v1", "policy/v1"]);
    for group in ["batch", "coordination.k8s.io", "policy"] {
        assert_eq!(api.ok("GET", &format!("/apis/{group}"), None).await["kind"], "APIGroup");
    }
}

fn sized_pod(name: &str, resources: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": resources}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limitrange_defaults_pods_and_bounds_containers_and_claims() {
    let api = Api::start().await;
    api.create_ns("lr").await;
    let lr = api
        .ok("POST", "/api/v1/namespaces/lr/limitranges", Some(json!({"metadata": {"name": "limits"}, "spec": {"limits": [
            {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "0.1"}, "max": {"cpu": "1"}},
            {"type": "PersistentVolumeClaim", "max": {"storage": "10Gi"}},
        ]}})))
        .await;
    assert_eq!(lr["spec"]["limits"][0]["defaultRequest"], json!({"cpu": "0.1", "memory": "256Mi"}), "kube's item defaults are stored");
    let p = api.ok("POST", "/api/v1/namespaces/lr/pods", Some(pod("plain"))).await;
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}})
    );
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );
    // A limit without a request requests the limit (pod defaulting), so defaultRequest does not apply.
    let p = api.ok("POST", "/api/v1/namespaces/lr/pods", Some(sized_pod("own", json!({"limits": {"cpu": "800m"}})))).await;
    assert_eq!(p["spec"]["containers"][0]["resources"]["requests"]["cpu"], "800m");
    let (s, v) = api.call("POST", "/api/v1/namespaces/lr/pods", Some(sized_pod("big", json!({"limits": {"cpu": "2"}})))).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")), "{v}");
    assert_eq!(v["message"], "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2");
    let (s, _) = api.call("GET", "/api/v1/namespaces/lr/pods/big", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a refused pod is not stored");
    let claim = |name: &str, size: &str| {
        json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
    };
    let (s, v) = api.call("POST", "/api/v1/namespaces/lr/persistentvolumeclaims", Some(claim("huge", "20Gi"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        v["message"],
        "persistentvolumeclaims \"huge\" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"
    );
    api.ok("POST", "/api/v1/namespaces/lr/persistentvolumeclaims", Some(claim("fits", "10Gi"))).await;
    // Pods elsewhere are untouched; bad quantities are 422 before any policy.
    let p = api.ok("POST", "/api/v1/namespaces/default/pods", Some(pod("free"))).await;
    assert!(p["spec"]["containers"][0].get("resources").is_none(), "{p}");
    let (s, v) = api.call("POST", "/api/v1/namespaces/lr/pods", Some(sized_pod("typo", json!({"limits": {"cpu": "1 core"}})))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "spec.containers[0].resources.limits[cpu]");
    let over = sized_pod("over", json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}));
    let (s, v) = api.call("POST", "/api/v1/namespaces/default/pods", Some(over)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["details"]["causes"][0]["message"], "Invalid value: \"2\": must be less than or equal to cpu limit of 1");
    let (s, _) = api
        .call("POST", "/api/v1/namespaces/lr/limitranges", Some(json!({"metadata": {"name": "bad"}, "spec": {"limits": [{"type": "Container", "max": {"cpu": "x"}}]}})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_counts_pods_and_compute_and_recounts_after_deletes() {
    let api = Api::start().await;
    api.create_ns("q").await;
    let q = api
        .ok("POST", "/api/v1/namespaces/q/resourcequotas", Some(json!({"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "2", "configmaps": "5"}}})))
        .await;
    assert_eq!(q["status"], json!({"hard": {"pods": "2", "configmaps": "5"}, "used": {"pods": "0", "configmaps": "0"}}));
    api.ok("POST", "/api/v1/namespaces/q/pods", Some(pod("p1"))).await;
    api.ok("POST", "/api/v1/namespaces/q/pods", Some(pod("p2"))).await;
    let (s, v) = api.call("POST", "/api/v1/namespaces/q/pods", Some(pod("p3"))).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")), "{v}");
    assert_eq!(v["message"], "pods \"p3\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2");
    let q = api.ok("GET", "/api/v1/namespaces/q/resourcequotas/pods", None).await;
    assert_eq!(q["status"]["used"], json!({"pods": "2", "configmaps": "0"}));
    assert!(q["status"].get("pendingCharges").is_none(), "settled creates leave no reservation: {q}");
    // A create that fails in the store leaves nothing charged either.
    let (s, _) = api.call("POST", "/api/v1/namespaces/q/configmaps", Some(cm("c", json!({})))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api.call("POST", "/api/v1/namespaces/q/configmaps", Some(cm("c", json!({})))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let q = api.ok("GET", "/api/v1/namespaces/q/resourcequotas/pods", None).await;
    assert_eq!(q["status"]["used"]["configmaps"], "1");
    // Deleting frees the quota for the next create (which recounts).
    api.ok("DELETE", "/api/v1/namespaces/q/pods/p1", None).await;
    api.ok("POST", "/api/v1/namespaces/q/pods", Some(pod("p3"))).await;
    let q = api.ok("GET", "/api/v1/namespaces/q/resourcequotas/pods", None).await;
    assert_eq!(q["status"]["used"]["pods"], "2");

    api.create_ns("cpu").await;
    api.ok("POST", "/api/v1/namespaces/cpu/resourcequotas", Some(json!({"metadata": {"name": "compute"}, "spec": {"hard": {"requests.cpu": "1", "limits.memory": "1Gi"}}}))).await;
    let (s, v) = api.call("POST", "/api/v1/namespaces/cpu/pods", Some(pod("bare"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["message"], "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: c; requests.cpu for: c");
    let sized = |name: &str, cpu: &str| sized_pod(name, json!({"requests": {"cpu": cpu}, "limits": {"memory": "256Mi"}}));
    api.ok("POST", "/api/v1/namespaces/cpu/pods", Some(sized("a", "600m"))).await;
    let (s, v) = api.call("POST", "/api/v1/namespaces/cpu/pods", Some(sized("b", "0.5"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        v["message"],
        "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"
    );
    // Requests default from limits, and exactly reaching the limit is allowed.
    api.ok("POST", "/api/v1/namespaces/cpu/pods", Some(sized_pod("c", json!({"limits": {"cpu": "400m", "memory": "768Mi"}})))).await;
    let q = api.ok("GET", "/api/v1/namespaces/cpu/resourcequotas/compute", None).await;
    assert_eq!(q["status"]["used"], json!({"requests.cpu": "1", "limits.memory": "1Gi"}));
    assert_eq!(q["status"]["hard"], json!({"requests.cpu": "1", "limits.memory": "1Gi"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_concurrent_creates_take_exactly_the_hard_limit() {
    let api = Api::start().await;
    api.create_ns("race").await;
    api.ok("POST", "/api/v1/namespaces/race/resourcequotas", Some(json!({"metadata": {"name": "three"}, "spec": {"hard": {"pods": "3"}}}))).await;
    // A second apiserver on the same store: its creates race through their own caches.
    let storage = EtcdStorage::connect(std::slice::from_ref(&api.endpoint)).await.unwrap();
    let registry = Arc::new(Registry::new(apiserver::storage::layered(storage)).unwrap());
    let auth = TokenAuth::parse(&format!("{TOKEN},admin,admin,\"system:masters\"\n")).unwrap();
    let second = router(AppState { registry, auth: Some(Arc::new(auth)) });
    let mut tasks = Vec::new();
    for i in 0..10 {
        let router = if i % 2 == 0 { api.router.clone() } else { second.clone() };
        tasks.push(tokio::spawn(async move {
            let req = Request::builder()
                .method("POST")
                .uri("/api/v1/namespaces/race/pods")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(Body::from(pod(&format!("p{i}")).to_string()))
                .unwrap();
            router.oneshot(req).await.unwrap().status()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap().as_u16());
    }
    codes.sort();
    assert_eq!(codes, [201, 201, 201, 403, 403, 403, 403, 403, 403, 403]);
    let pods = api.ok("GET", "/api/v1/namespaces/race/pods", None).await;
    assert_eq!(pods["items"].as_array().unwrap().len(), 3);
    let q = api.ok("GET", "/api/v1/namespaces/race/resourcequotas/three", None).await;
    assert_eq!(q["status"]["used"], json!({"pods": "3"}));
    assert!(q["status"].get("pendingCharges").is_none(), "{q}");
}

/// A dry run is checked against quota like a real create but charges nothing: the quota's
/// status (and so the store) is not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_dry_run_checks_but_does_not_charge() {
    let api = Api::start().await;
    api.create_ns("dq").await;
    api.ok("POST", "/api/v1/namespaces/dq/resourcequotas", Some(json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}}))).await;
    let before = store_revision(&api).await;
    let v = api.ok("POST", "/api/v1/namespaces/dq/pods?dryRun=All", Some(pod("a"))).await;
    assert_eq!(v["metadata"]["name"], "a");
    assert_eq!(store_revision(&api).await, before, "a dry run wrote (the quota's reservation?)");
    api.ok("POST", "/api/v1/namespaces/dq/pods", Some(pod("real"))).await;
    let (s, v) = api.call("POST", "/api/v1/namespaces/dq/pods?dryRun=All", Some(pod("b"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "over quota, dry run or not: {v}");
    assert!(v["message"].as_str().unwrap().contains("exceeded quota: q"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_reservations_hold_until_the_create_is_over() {
    use apiserver::admission::{Attributes, ResourceQuota, ValidatingPlugin};
    let api = Api::start().await;
    api.create_ns("hold").await;
    api.ok("POST", "/api/v1/namespaces/hold/resourcequotas", Some(json!({"metadata": {"name": "one"}, "spec": {"hard": {"pods": "1"}}}))).await;
    let storage = apiserver::storage::layered(EtcdStorage::connect(std::slice::from_ref(&api.endpoint)).await.unwrap());
    let plugin = ResourceQuota::new();
    let pods = apiserver::registry::lookup("", "v1", "pods").unwrap();
    let with_uid = |name: &str| {
        let mut p = pod(name);
        p["metadata"]["uid"] = json!(format!("uid-{name}"));
        p
    };
    let (a, b) = (with_uid("a"), with_uid("b"));
    let attrs_a = Attributes::create(pods, Some("hold"), "a", "uid-a");
    let attrs_b = Attributes::create(pods, Some("hold"), "b", "uid-b");
    // `a` is admitted but not stored yet: its reservation alone fills the quota.
    plugin.validate(&attrs_a, &a, storage.as_ref()).await.unwrap();
    let q = api.ok("GET", "/api/v1/namespaces/hold/resourcequotas/one", None).await;
    assert_eq!(q["status"]["used"], json!({"pods": "1"}));
    assert_eq!(q["status"]["pendingCharges"][0]["uid"], "uid-a");
    let err = plugin.validate(&attrs_b, &b, storage.as_ref()).await.unwrap_err();
    assert_eq!(err.to_string(), "pods \"b\" is forbidden: exceeded quota: one, requested: pods=1, used: pods=1, limited: pods=1");
    // The create of `a` failed: finishing it frees the quota.
    plugin.finish(&attrs_a, storage.as_ref()).await;
    let q = api.ok("GET", "/api/v1/namespaces/hold/resourcequotas/one", None).await;
    assert_eq!(q["status"], json!({"hard": {"pods": "1"}, "used": {"pods": "0"}}));
    plugin.validate(&attrs_b, &b, storage.as_ref()).await.unwrap();
}

const TABLE_ACCEPT: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// A GET with an Accept header (kubectl's, for a Table).
async fn table_get(api: &Api, path: &str, accept: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    let resp = api.raw(req).await;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn column_names(table: &Value) -> Vec<&str> {
    table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_negotiation_for_get_list_and_watch() {
    let api = Api::start().await;
    let pods = "/api/v1/namespaces/default/pods";
    api.ok("POST", pods, Some(pod("web"))).await;
    let running = json!({"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}});
    let status = json!({"status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [running]}});
    let web = api.ok("PATCH", &format!("{pods}/web/status"), Some(status)).await;
    api.ok("POST", pods, Some(pod("db"))).await;

    // LIST as kubectl asks: a meta.k8s.io/v1 Table, rows carrying PartialObjectMetadata.
    let (s, t) = table_get(&api, &format!("{pods}?limit=1"), TABLE_ACCEPT).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!((t["kind"].as_str(), t["apiVersion"].as_str()), (Some("Table"), Some("meta.k8s.io/v1")));
    assert_eq!(
        column_names(&t),
        ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    );
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    assert!(t["metadata"]["continue"].as_str().is_some_and(|c| !c.is_empty()), "{t}");
    assert!(t["metadata"]["resourceVersion"].as_str().is_some());
    let row = &t["rows"][0];
    assert_eq!(row["cells"][0], "db");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["name"], "db");
    assert!(row["object"].get("spec").is_none());

    // GET of one object: a one-row Table with the object's resourceVersion.
    let (_, t) = table_get(&api, &format!("{pods}/web"), TABLE_ACCEPT).await;
    assert_eq!(t["rows"].as_array().unwrap().len(), 1);
    let cells = &t["rows"][0]["cells"];
    assert_eq!((cells[0].as_str(), cells[1].as_str(), cells[2].as_str(), cells[5].as_str()), (Some("web"), Some("1/1"), Some("Running"), Some("10.0.0.5")));
    assert_eq!(t["metadata"]["resourceVersion"], web["metadata"]["resourceVersion"]);

    // includeObject=Object carries the whole object; None carries none; others are a 400.
    let (_, t) = table_get(&api, &format!("{pods}/web?includeObject=Object"), TABLE_ACCEPT).await;
    assert_eq!(t["rows"][0]["object"]["spec"]["containers"][0]["name"], "c");
    let (_, t) = table_get(&api, &format!("{pods}?includeObject=None"), TABLE_ACCEPT).await;
    assert_eq!(t["rows"].as_array().unwrap().len(), 2);
    assert!(t["rows"][0].get("object").is_none());
    let (s, st) = table_get(&api, &format!("{pods}?includeObject=Everything"), TABLE_ACCEPT).await;
    assert_eq!((s, st["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")));
    let (_, t) = table_get(&api, pods, "application/json;as=Table;v=v1beta1;g=meta.k8s.io").await;
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");

    // Plain JSON (or no Accept) still gets the list and the object.
    let (_, l) = table_get(&api, pods, "application/json").await;
    assert_eq!(l["kind"], "PodList");
    let (_, l) = table_get(&api, &format!("{pods}/web"), "application/json, */*").await;
    assert_eq!(l["kind"], "Pod");
    assert_eq!(api.ok("GET", pods, None).await["kind"], "PodList");

    // Other kinds: their own columns; kinds without a printer: Name and Age.
    let (_, t) = table_get(&api, "/api/v1/namespaces", TABLE_ACCEPT).await;
    assert_eq!(column_names(&t), ["Name", "Status", "Age"]);
    assert!(t["rows"].as_array().unwrap().iter().any(|r| r["cells"][0] == "default" && r["cells"][1] == "Active"));
    api.ok("POST", "/api/v1/namespaces/default/limitranges", Some(json!({"metadata": {"name": "lr"}, "spec": {"limits": []}}))).await;
    let (_, t) = table_get(&api, "/api/v1/namespaces/default/limitranges", TABLE_ACCEPT).await;
    assert_eq!(column_names(&t), ["Name", "Age"]);

    // Watch: each event's object is a one-row Table; only the first has column definitions.
    let head = t["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let req = Request::builder()
        .uri(format!("{pods}?watch=true&resourceVersion={head}&allowWatchBookmarks=true"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("accept", TABLE_ACCEPT)
        .body(Body::empty())
        .unwrap();
    let mut body = api.raw(req).await.into_body();
    api.ok("PATCH", &format!("{pods}/db"), Some(json!({"metadata": {"labels": {"x": "1"}}}))).await;
    api.ok("DELETE", &format!("{pods}/db"), None).await;
    let mut buf = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.iter().filter(|e| e["type"] != "BOOKMARK").count() < 2 {
        let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await else { break };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                events.push(serde_json::from_slice(&line).unwrap());
            }
        }
    }
    let changes: Vec<&Value> = events.iter().filter(|e| e["type"] != "BOOKMARK").collect();
    assert_eq!(changes.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(), ["MODIFIED", "DELETED"]);
    assert_eq!(changes[0]["object"]["kind"], "Table");
    assert_eq!(changes[0]["object"]["rows"][0]["cells"][0], "db");
    assert_eq!(changes[0]["object"]["columnDefinitions"].as_array().unwrap().len(), 9);
    assert_eq!(changes[1]["object"]["columnDefinitions"], json!([]));
    assert_eq!(changes[1]["object"]["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    if let Some(bm) = events.iter().find(|e| e["type"] == "BOOKMARK") {
        assert_eq!(bm["object"]["kind"], "Pod");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certauth_certificate_user_or_token() {
    use apiserver::auth::{CertificateUser, User};
    let api = Api::start().await;
    let jane = CertificateUser(User { name: "jane".into(), groups: vec!["dev".into()] });
    let whoami = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let send = |method: &str, path: &str, cert: Option<CertificateUser>, token: Option<&str>| {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(c) = cert {
            b = b.extension(c);
        }
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::from("{}")).unwrap()
    };
    async fn json_of(resp: axum::response::Response) -> (StatusCode, Value) {
        let s = resp.status();
        (s, serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap())
    }

    // A verified certificate's user (the TLS server puts it on each request) needs no token.
    let (s, _) = json_of(api.raw(send("GET", "/api/v1/namespaces", Some(jane.clone()), None)).await).await;
    assert_eq!(s, StatusCode::OK);
    let (s, review) = json_of(api.raw(send("POST", whoami, Some(jane.clone()), None)).await).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["status"]["userInfo"], json!({"username": "jane", "groups": ["dev", "system:authenticated"]}));
    // The certificate wins over a token on the same request, as kube's x509 authenticator runs first.
    let (_, review) = json_of(api.raw(send("POST", whoami, Some(jane), Some(TOKEN))).await).await;
    assert_eq!(review["status"]["userInfo"]["username"], "jane");
    // The token alone still works.
    let (_, review) = json_of(api.raw(send("POST", whoami, None, Some(TOKEN))).await).await;
    assert_eq!(review["status"]["userInfo"], json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]}));
    // Neither credential, or an unknown token: 401 Status.
    for token in [None, Some("wrong")] {
        for (method, path) in [("GET", "/api/v1/namespaces"), ("POST", whoami)] {
            let (s, st) = json_of(api.raw(send(method, path, None, token)).await).await;
            assert_eq!((s, st["reason"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthorized")), "{method} {path}");
        }
    }
    assert_eq!(api.raw(send("GET", "/healthz", None, None)).await.status(), StatusCode::OK);
}

/// A body as kubectl's imperative commands send it: `k8s\0`, then `runtime.Unknown` around the
/// typed object in protobuf.
fn protobuf_body(api_version: &str, kind: &str, obj: &impl prost::Message) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(obj.encode_to_vec()),
        ..Default::default()
    };
    [b"k8s\0".as_slice(), &prost::Message::encode_to_vec(&unknown)].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_create_update_and_scale() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::autoscaling::v1 as autoscaling;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    const PB: Option<&str> = Some("application/vnd.kubernetes.protobuf");
    let api = Api::start().await;
    let om = |name: &str| Some(ObjectMeta { name: Some(name.into()), ..Default::default() });

    let ns = core::Namespace { metadata: om("pb"), ..Default::default() };
    let (s, v) = api.call_ct("POST", "/api/v1/namespaces", PB, Some(protobuf_body("v1", "Namespace", &ns))).await;
    assert_eq!((s, v["metadata"]["name"].as_str()), (StatusCode::CREATED, Some("pb")), "{v}");
    assert_eq!(v["status"]["phase"], "Active");

    let cm = core::ConfigMap {
        metadata: om("conf"),
        data: [("k".to_string(), "v".to_string())].into(),
        binary_data: [("b".to_string(), vec![0, 255])].into(),
        ..Default::default()
    };
    let base = "/api/v1/namespaces/pb/configmaps";
    let (s, v) = api.call_ct("POST", base, PB, Some(protobuf_body("v1", "ConfigMap", &cm))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!((v["data"].clone(), v["binaryData"].clone()), (json!({"k": "v"}), json!({"b": "AP8="})));
    assert_eq!(v["kind"], "ConfigMap");
    // PUT in protobuf, with the resourceVersion just read.
    let rv = v["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut cm2 = cm.clone();
    cm2.metadata.as_mut().unwrap().resource_version = Some(rv);
    cm2.data = [("k".to_string(), "w".to_string())].into();
    let (s, v) = api.call_ct("PUT", &format!("{base}/conf"), PB, Some(protobuf_body("v1", "ConfigMap", &cm2))).await;
    assert_eq!((s, v["data"]["k"].as_str()), (StatusCode::OK, Some("w")), "{v}");
    // The typeMeta is checked against the URL like JSON's apiVersion/kind.
    let secret = core::Secret { metadata: om("s"), ..Default::default() };
    let (s, v) = api.call_ct("POST", base, PB, Some(protobuf_body("v1", "Secret", &secret))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("Secret"), "{v}");
    // A field number unknown to the schema is a 400 naming it, not silently dropped.
    let mut bytes = protobuf_body("v1", "ConfigMap", &cm);
    let raw_len_at = bytes.len() - prost::Message::encode_to_vec(&cm).len() - 1;
    bytes[raw_len_at] += 3;
    bytes.extend([0xf8, 0x06, 0x01]); // field 111, varint 1
    let (s, v) = api.call_ct("POST", base, PB, Some(bytes)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("unknown field number 111 in message api/core/v1/ConfigMap"), "{v}");

    // Deployment with an explicit replicas: 0, then its scale subresource PUT in protobuf.
    let labels: std::collections::BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    let d = apps::Deployment {
        metadata: om("web"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(LabelSelector { match_labels: labels.clone(), ..Default::default() }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(ObjectMeta { labels, ..Default::default() }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container { name: Some("c".into()), image: Some("busybox".into()), ..Default::default() }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let deps = "/apis/apps/v1/namespaces/pb/deployments";
    let (s, v) = api.call_ct("POST", deps, PB, Some(protobuf_body("apps/v1", "Deployment", &d))).await;
    assert_eq!((s, v["spec"]["replicas"].as_i64()), (StatusCode::CREATED, Some(0)), "{v}");
    let scale = autoscaling::Scale { metadata: om("web"), spec: Some(autoscaling::ScaleSpec { replicas: Some(4) }), status: None };
    let (s, v) = api.call_ct("PUT", &format!("{deps}/web/scale"), PB, Some(protobuf_body("autoscaling/v1", "Scale", &scale))).await;
    assert_eq!((s, v["spec"]["replicas"].as_i64()), (StatusCode::OK, Some(4)), "{v}");
    assert_eq!(api.ok("GET", &format!("{deps}/web"), None).await["spec"]["replicas"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bodies_create_and_update() {
    let api = Api::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  labels: {app: web}\ndata:\n  port: \"80\"\n  text: |\n    two\n    lines\n";
    let (s, v) = api.call_ct("POST", base, Some("application/yaml"), Some(yaml.as_bytes().to_vec())).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["data"], json!({"port": "80", "text": "two\nlines\n"}));
    assert_eq!(v["metadata"]["labels"]["app"], "web");
    let rv = v["metadata"]["resourceVersion"].as_str().unwrap();
    let update = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  resourceVersion: \"{rv}\"\ndata:\n  port: \"81\"\n");
    let (s, v) = api.call_ct("PUT", &format!("{base}/y"), Some("application/yaml; charset=utf-8"), Some(update.into_bytes())).await;
    assert_eq!((s, v["data"].clone()), (StatusCode::OK, json!({"port": "81"})), "{v}");
    for bad in ["a: [unclosed", "- a\n- list\n", "just a string"] {
        let (s, v) = api.call_ct("POST", base, Some("application/yaml"), Some(bad.as_bytes().to_vec())).await;
        assert_eq!((s, v["kind"].as_str()), (StatusCode::BAD_REQUEST, Some("Status")), "{bad}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_validation_of_unknown_fields() {
    let api = Api::start().await;
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let deploy = |name: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
               "spec": {"foo": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox", "bar": true}]}}}})
    };
    let post = |query: &str, body: Value| {
        Request::builder()
            .method("POST")
            .uri(format!("{base}{query}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (s, v) = api.call_ct("POST", &format!("{base}?fieldValidation=Strict"), Some("application/json"), Some(deploy("a").to_string().into_bytes())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v["message"],
        "strict decoding error: unknown field \"spec.foo\", unknown field \"spec.template.spec.containers[0].bar\""
    );
    // Warn, and the default: created, one Warning header per unknown field.
    for (query, name) in [("?fieldValidation=Warn", "b"), ("", "c")] {
        let resp = api.raw(post(query, deploy(name))).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let warnings: Vec<&str> = resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(
            warnings,
            [r#"299 - "unknown field \"spec.foo\"""#, r#"299 - "unknown field \"spec.template.spec.containers[0].bar\"""#]
        );
    }
    let resp = api.raw(post("?fieldValidation=Ignore", deploy("d"))).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers().get("warning").is_none());
    // Known fields pass Strict, inlined structs (a configMap volume's name) included.
    let mut ok = deploy("e");
    ok["spec"].as_object_mut().unwrap().remove("foo");
    ok["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("bar");
    ok["spec"]["template"]["spec"]["volumes"] = json!([{"name": "v", "configMap": {"name": "cm"}}]);
    let resp = api.raw(post("?fieldValidation=Strict", ok)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers().get("warning").is_none());
}

/// The store's current revision (a LIST's resourceVersion): a dry run must not move it.
async fn store_revision(api: &Api) -> String {
    api.ok("GET", "/api/v1/namespaces", None).await["metadata"]["resourceVersion"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_answers_without_writing() {
    let api = Api::start().await;
    api.create_ns("dry").await;
    let base = "/api/v1/namespaces/dry/configmaps";
    let before = store_revision(&api).await;

    // Create: 201 with the object as it would be stored, but no resourceVersion, and nothing stored.
    let (s, v) = api.call("POST", &format!("{base}?dryRun=All"), Some(cm("a", json!({"x": "1"})))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(v["metadata"]["creationTimestamp"].is_string());
    assert!(v["metadata"].get("resourceVersion").is_none(), "{v}");
    assert_eq!(api.call("GET", &format!("{base}/a"), None).await.0, StatusCode::NOT_FOUND);
    let v = api.ok("POST", &format!("{base}?dryRun=All"), Some(json!({"metadata": {"generateName": "gen-"}}))).await;
    assert!(v["metadata"]["name"].as_str().unwrap().starts_with("gen-"), "{v}");
    // Admission and validation still run.
    let (s, _) = api.call("POST", "/api/v1/namespaces/nowhere/configmaps?dryRun=All", Some(cm("a", json!({})))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.call("POST", &format!("{base}?dryRun=All"), Some(cm("a", json!({"bad key!": "1"})))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Any other value is refused as kube-apiserver refuses it.
    let (s, v) = api.call("POST", &format!("{base}?dryRun=Yes"), Some(cm("a", json!({})))).await;
    assert_eq!((s, v["details"]["causes"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("dryRun")), "{v}");
    assert_eq!(store_revision(&api).await, before);

    let stored = api.ok("POST", base, Some(cm("b", json!({"x": "1"})))).await;
    api.ok("POST", base, Some(json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}))).await;
    let (s, v) = api.call("POST", &format!("{base}?dryRun=All"), Some(cm("b", json!({})))).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::CONFLICT, Some("AlreadyExists")));
    let before = store_revision(&api).await;
    let one = format!("{base}/b");

    // Update: the answer is the would-be object at the unchanged resourceVersion.
    let mut next = stored.clone();
    next["data"] = json!({"x": "2"});
    let v = api.ok("PUT", &format!("{one}?dryRun=All"), Some(next.clone())).await;
    assert_eq!((v["data"]["x"].as_str(), rv(&v)), (Some("2"), rv(&stored)));
    next["metadata"]["resourceVersion"] = json!("1");
    let (s, _) = api.call("PUT", &format!("{one}?dryRun=All"), Some(next)).await;
    assert_eq!(s, StatusCode::CONFLICT, "a stale resourceVersion is still a conflict");
    // Every patch type.
    for (ct, patch) in [
        ("application/merge-patch+json", json!({"data": {"x": "3"}})),
        ("application/strategic-merge-patch+json", json!({"data": {"x": "3"}})),
        ("application/json-patch+json", json!([{"op": "add", "path": "/data/x", "value": "3"}])),
    ] {
        let (s, v) = api.call_ct("PATCH", &format!("{one}?dryRun=All"), Some(ct), Some(patch.to_string().into_bytes())).await;
        assert_eq!((s, v["data"]["x"].as_str()), (StatusCode::OK, Some("3")), "{ct}: {v}");
    }
    let (s, _) = api.call("PATCH", &format!("{one}?dryRun=All"), Some(json!({"metadata": {"labels": {"bad key!": "1"}}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Delete, in the query or in DeleteOptions (where kubectl puts it); preconditions still hold.
    let (s, v) = api.call("DELETE", &format!("{one}?dryRun=All"), None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("Success")), "{v}");
    let (s, _) = api.call("DELETE", &one, Some(json!({"dryRun": ["All"]}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call("DELETE", &one, Some(json!({"dryRun": ["All"], "preconditions": {"uid": "other"}}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = api.call("DELETE", &one, Some(json!({"dryRun": ["Nope"]}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // A finalizer makes it a would-be mark for deletion.
    let v = api.ok("DELETE", &format!("{base}/f?dryRun=All"), None).await;
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    // Collection.
    let v = api.ok("DELETE", &format!("{base}?dryRun=All"), None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");

    assert_eq!(api.ok("GET", &one, None).await, stored);
    assert!(api.ok("GET", &format!("{base}/f"), None).await["metadata"].get("deletionTimestamp").is_none());
    assert_eq!(store_revision(&api).await, before);

    // Scale and binding take part too.
    let deps = "/apis/apps/v1/namespaces/dry/deployments";
    let d = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    api.ok("POST", deps, Some(d)).await;
    api.ok("POST", "/api/v1/namespaces/dry/pods", Some(pod("p"))).await;
    let before = store_revision(&api).await;
    let v = api.ok("PATCH", &format!("{deps}/web/scale?dryRun=All"), Some(json!({"spec": {"replicas": 4}}))).await;
    assert_eq!(v["spec"]["replicas"], 4);
    let binding = json!({"target": {"kind": "Node", "name": "n1"}});
    let (s, _) = api.call("POST", "/api/v1/namespaces/dry/pods/p/binding?dryRun=All", Some(binding)).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(api.ok("GET", &format!("{deps}/web"), None).await["spec"]["replicas"], 1);
    assert!(api.ok("GET", "/api/v1/namespaces/dry/pods/p", None).await["spec"].get("nodeName").is_none());
    assert_eq!(store_revision(&api).await, before);
}

/// A server-side apply PATCH by `manager`.
async fn apply_as(api: &Api, path: &str, manager: &str, extra: &str, config: &Value) -> (StatusCode, Value) {
    let url = format!("{path}?fieldManager={manager}{extra}");
    api.call_ct("PATCH", &url, Some("application/apply-patch+yaml"), Some(config.to_string().into_bytes())).await
}

fn owners_of(obj: &Value, fields_v1_path: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for e in obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default() {
        let mut node = &e["fieldsV1"];
        for el in fields_v1_path {
            node = &node[*el];
        }
        if node.is_object() {
            out.push(format!("{}/{}", e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_owns_merges_and_conflicts() {
    let api = Api::start().await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let web = format!("{deps}/web");
    let config = |replicas: i64, labels: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
    };
    // No fieldManager: 422 as kube-apiserver; a missing object is created (201).
    let (s, v) = api.call_ct("PATCH", &web, Some("application/apply-patch+yaml"), Some(config(2, json!({})).to_string().into_bytes())).await;
    assert_eq!((s, v["details"]["causes"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("fieldManager")), "{v}");
    let (s, v) = apply_as(&api, &web, "ci", "", &json!({"metadata": {"name": "web"}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "apiVersion and kind are required: {v}");
    // YAML as well as JSON.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n";
    let url = "/api/v1/namespaces/default/configmaps/y?fieldManager=ci";
    let (s, v) = api.call_ct("PATCH", url, Some("application/apply-patch+yaml"), Some(yaml.as_bytes().to_vec())).await;
    assert_eq!((s, v["data"]["k"].as_str()), (StatusCode::CREATED, Some("v")), "{v}");
    let (s, v) = api.call_ct("PATCH", url, Some("application/apply-patch+yaml"), Some(b"a: [b".to_vec())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let mut twice = config(1, json!({}));
    twice["spec"]["template"]["spec"]["containers"] = json!([{"name": "c", "image": "a"}, {"name": "c", "image": "b"}]);
    let (s, v) = apply_as(&api, &web, "ci", "", &twice).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["message"], r#".spec.template.spec.containers: duplicate entries for key name="c""#);
    let (s, v) = apply_as(&api, &web, "ci", "&dryRun=All", &config(2, json!({"app": "web"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(api.call("GET", &web, None).await.0, StatusCode::NOT_FOUND, "a dry-run apply creates nothing");
    let (s, created) = apply_as(&api, &web, "ci", "", &config(2, json!({"app": "web", "tier": "fe"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let mf = &created["metadata"]["managedFields"][0];
    assert_eq!((mf["manager"].as_str(), mf["operation"].as_str(), mf["apiVersion"].as_str()), (Some("ci"), Some("Apply"), Some("apps/v1")));
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert!(mf["time"].as_str().unwrap().ends_with('Z'));
    let c = &mf["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"c"}"#];
    assert_eq!((c["."].clone(), c["f:image"].clone()), (json!({}), json!({})), "{mf}");
    assert_eq!(created["metadata"]["generation"], 1);

    // Applying again without the tier label removes it; the same configuration again writes nothing.
    let (s, v) = apply_as(&api, &web, "ci", "", &config(3, json!({"app": "web"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["spec"]["replicas"].as_i64(), v["metadata"]["labels"].clone()), (Some(3), json!({"app": "web"})));
    assert_eq!(v["metadata"]["generation"], 2);
    let (_, again) = apply_as(&api, &web, "ci", "", &config(3, json!({"app": "web"}))).await;
    assert_eq!(rv(&again), rv(&v));

    // Another manager's update takes the field; applying a different value is a conflict.
    let patched = api.ok("PATCH", &format!("{web}?fieldManager=scaler"), Some(json!({"spec": {"replicas": 5}}))).await;
    assert_eq!(owners_of(&patched, &["f:spec", "f:replicas"]), ["scaler/Update"]);
    assert_eq!(patched["metadata"]["generation"], 3);
    let (s, v) = apply_as(&api, &web, "ci", "", &config(4, json!({"app": "web"}))).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::CONFLICT, Some("Conflict")), "{v}");
    assert_eq!(v["message"], r#"Apply failed with 1 conflict: conflict with "scaler" using apps/v1: .spec.replicas"#);
    assert_eq!(v["details"]["causes"][0], json!({"reason": "FieldManagerConflict", "message": "conflict with \"scaler\" using apps/v1", "field": ".spec.replicas"}));
    // The live value is no conflict (shared); force takes the field over.
    let (s, v) = apply_as(&api, &web, "ci", "", &config(5, json!({"app": "web"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(owners_of(&v, &["f:spec", "f:replicas"]), ["ci/Apply", "scaler/Update"]);
    let (s, v) = apply_as(&api, &web, "ci", "&force=true", &config(4, json!({"app": "web"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["spec"]["replicas"], 4);
    assert_eq!(owners_of(&v, &["f:spec", "f:replicas"]), ["ci/Apply"]);
    // A field another manager added stays when the applier never owned it.
    let v = api.ok("PATCH", &format!("{web}?fieldManager=labeler"), Some(json!({"metadata": {"labels": {"team": "a"}}}))).await;
    assert_eq!(owners_of(&v, &["f:metadata", "f:labels", "f:team"]), ["labeler/Update"]);
    let (_, v) = apply_as(&api, &web, "ci", "", &config(4, json!({}))).await;
    assert_eq!(v["metadata"]["labels"], json!({"team": "a"}), "{v}");
    // Without fieldManager, an update is recorded under the User-Agent's product.
    let req = axum::http::Request::builder()
        .method("PATCH")
        .uri(&web)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/merge-patch+json")
        .header("user-agent", "kubectl/v1.37.0 (linux/amd64) kubernetes/abc")
        .body(Body::from(json!({"metadata": {"annotations": {"note": "x"}}}).to_string()))
        .unwrap();
    assert_eq!(api.raw(req).await.status(), StatusCode::OK);
    let v = api.ok("GET", &web, None).await;
    assert_eq!(owners_of(&v, &["f:metadata", "f:annotations", "f:note"]), ["kubectl/Update"]);
    // Non-apply writes may not force; the status subresource is owned separately.
    let (s, _) = api.call("PATCH", &format!("{web}?force=true"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let v = api.ok("PATCH", &format!("{web}/status?fieldManager=ctl"), Some(json!({"status": {"replicas": 1}}))).await;
    let e = v["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "ctl").unwrap().clone();
    assert_eq!((e["subresource"].as_str(), e["fieldsV1"].clone()), (Some("status"), json!({"f:status": {"f:replicas": {}}})));
    // Status can be applied too, with conflicts against the status writers.
    let status_config = |n: i64| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"replicas": n}});
    let (s, v) = apply_as(&api, &format!("{web}/status"), "ctl2", "", &status_config(2)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["details"]["causes"][0]["message"], r#"conflict with "ctl" with subresource "status" using apps/v1"#);
    let (s, v) = apply_as(&api, &format!("{web}/status"), "ctl2", "&force=true", &status_config(2)).await;
    assert_eq!((s, v["status"]["replicas"].as_i64()), (StatusCode::OK, Some(2)), "{v}");
    let e = v["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "ctl2").unwrap().clone();
    assert_eq!((e["operation"].as_str(), e["subresource"].as_str()), (Some("Apply"), Some("status")));
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    assert!(owners_of(&v, &["f:spec", "f:replicas"]).contains(&"ci/Apply".to_string()), "spec ownership is untouched");
    let (s, _) = apply_as(&api, &format!("{web}/scale"), "ctl2", "", &status_config(2)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Writes through .../scale own spec.replicas in an entry marked with the subresource.
    api.ok("PATCH", &format!("{web}/scale?fieldManager=hpa"), Some(json!({"spec": {"replicas": 6}}))).await;
    let v = api.ok("GET", &web, None).await;
    assert_eq!(owners_of(&v, &["f:spec", "f:replicas"]), ["hpa/Update"]);
    let e = v["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "hpa").unwrap().clone();
    assert_eq!(e["subresource"], "scale");
    let (s, v) = apply_as(&api, &web, "ci", "", &config(4, json!({}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["details"]["causes"][0]["message"], r#"conflict with "hpa" with subresource "scale" using apps/v1"#);
    // A POST records its manager too.
    let cm = api.ok("POST", "/api/v1/namespaces/default/configmaps?fieldManager=maker", Some(cm("m", json!({"a": "1"})))).await;
    assert_eq!(owners_of(&cm, &["f:data", "f:k"]), ["maker/Update"]);
    // ... for what it sent: the server's defaults are nobody's, so no apply prunes them.
    let d = api.ok("POST", &format!("{deps}?fieldManager=maker"), Some(json!({"metadata": {"name": "d2"}, "spec": config(1, json!({}))["spec"].clone()}))).await;
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(owners_of(&d, &["f:spec", "f:replicas"]), ["maker/Update"]);
    assert!(owners_of(&d, &["f:spec", "f:revisionHistoryLimit"]).is_empty(), "{d}");
}

/// A write with a body of `content_type`: its status, `Warning` header texts and answer.
async fn fieldval_call(api: &Api, method: &str, path: &str, content_type: &str, body: &str) -> (StatusCode, Vec<String>, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = api.raw(req).await;
    let status = resp.status();
    let warnings = resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, warnings, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fieldval_duplicate_fields_in_create_and_update_bodies() {
    let api = Api::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let json_body = |name: &str| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "{name}", "labels": {{"a": "1", "a": "2"}}}},
                "data": {{"k": "first", "k": "last"}}, "bogus": 1, "bogus": 2}}"#
        )
    };
    let (s, w, v) = fieldval_call(&api, "POST", &format!("{base}?fieldValidation=Strict"), "application/json", &json_body("s")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v["message"],
        r#"strict decoding error: duplicate field "metadata.labels.a", duplicate field "data.k", unknown field "bogus""#
    );
    assert!(w.is_empty());
    let (s, _) = api.call("GET", &format!("{base}/s"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a refused create writes nothing");
    // Warn and the default: created with the last of each key, a warning per field.
    for (query, name) in [("?fieldValidation=Warn", "w"), ("", "d")] {
        let (s, w, v) = fieldval_call(&api, "POST", &format!("{base}{query}"), "application/json", &json_body(name)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(
            w,
            [
                r#"299 - "duplicate field \"metadata.labels.a\"""#,
                r#"299 - "duplicate field \"data.k\"""#,
                r#"299 - "unknown field \"bogus\"""#
            ]
        );
        assert_eq!((v["data"]["k"].as_str(), v["metadata"]["labels"]["a"].as_str()), (Some("last"), Some("2")));
    }
    let (s, w, v) = fieldval_call(&api, "POST", &format!("{base}?fieldValidation=Ignore"), "application/json", &json_body("i")).await;
    assert_eq!((s, w.len(), v["data"]["k"].as_str()), (StatusCode::CREATED, 0, Some("last")));
    // YAML bodies, nested in a list.
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\nspec:\n  containers:\n  - name: c\n    image: a\n    image: b\n";
    let (s, _, v) = fieldval_call(&api, "POST", "/api/v1/namespaces/default/pods?fieldValidation=Strict", "application/yaml", yaml).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some(r#"strict decoding error: duplicate field "spec.containers[0].image""#)));
    let (s, w, v) = fieldval_call(&api, "POST", "/api/v1/namespaces/default/pods", "application/yaml", yaml).await;
    assert_eq!((s, v["spec"]["containers"][0]["image"].as_str()), (StatusCode::CREATED, Some("b")), "{v}");
    assert_eq!(w, [r#"299 - "duplicate field \"spec.containers[0].image\"""#]);
    // PUT: refused under Strict, the object unchanged.
    let before = api.ok("GET", &format!("{base}/i"), None).await;
    let put = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "i"}, "data": {"k": "x", "k": "y"}}"#;
    let (s, _, v) = fieldval_call(&api, "PUT", &format!("{base}/i?fieldValidation=Strict"), "application/json", put).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some(r#"strict decoding error: duplicate field "data.k""#)));
    assert_eq!(api.ok("GET", &format!("{base}/i"), None).await, before);
    let (s, w, v) = fieldval_call(&api, "PUT", &format!("{base}/i"), "application/json", put).await;
    assert_eq!((s, v["data"].clone()), (StatusCode::OK, json!({"k": "y"})));
    assert_eq!(w, [r#"299 - "duplicate field \"data.k\"""#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fieldval_patches_of_every_type() {
    let api = Api::start().await;
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let deploy = |name: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    };
    // Each patch type adds spec.bogus and a container field `bar`.
    let patches: [(&str, &str, String); 4] = [
        ("merge", "application/merge-patch+json", r#"{"spec": {"bogus": 1, "replicas": 3}}"#.into()),
        (
            "strategic",
            "application/strategic-merge-patch+json",
            r#"{"spec": {"bogus": 1, "template": {"spec": {"containers": [{"name": "c", "bar": true}]}}}}"#.into(),
        ),
        ("json", "application/json-patch+json", r#"[{"op": "add", "path": "/spec/bogus", "value": 1}]"#.into()),
        ("apply", "application/apply-patch+yaml", {
            let mut c = deploy("apply");
            c["spec"]["bogus"] = json!(1);
            c.to_string()
        }),
    ];
    for (ty, ct, body) in &patches {
        let expected: &[&str] = match *ty {
            "strategic" => &["spec.bogus", "spec.template.spec.containers[0].bar"],
            _ => &["spec.bogus"],
        };
        let unknown: Vec<String> = expected.iter().map(|p| format!("unknown field \"{p}\"")).collect();
        for mode in ["Strict", "Warn", "Ignore", ""] {
            let name = format!("{ty}-{}", if mode.is_empty() { "default" } else { mode }).to_lowercase();
            api.ok("POST", base, Some(deploy(&name))).await;
            let before = api.ok("GET", &format!("{base}/{name}"), None).await;
            // An apply names its object in the body.
            let body = body.replace("\"apply\"", &format!("\"{name}\""));
            let url = format!("{base}/{name}?fieldManager=t&fieldValidation={mode}");
            let (s, w, v) = fieldval_call(&api, "PATCH", &url, ct, &body).await;
            if mode == "Strict" {
                assert_eq!(s, StatusCode::BAD_REQUEST, "{ty}: {v}");
                assert_eq!(v["message"], format!("strict decoding error: {}", unknown.join(", ")), "{ty}");
                assert_eq!(api.ok("GET", &format!("{base}/{name}"), None).await, before, "{ty}: nothing written");
                continue;
            }
            assert_eq!(s, StatusCode::OK, "{ty} {mode}: {v}");
            assert_eq!(v["spec"]["bogus"], 1, "{ty}: stored as sent");
            let want: Vec<String> =
                if mode == "Ignore" { vec![] } else { unknown.iter().map(|u| format!("299 - \"{}\"", u.replace('"', "\\\""))).collect() };
            assert_eq!(w, want, "{ty} {mode}");
            // The field is now stored: a strict patch that does not add one passes.
            let url = format!("{base}/{name}?fieldValidation=Strict");
            let (s, w, v) = fieldval_call(&api, "PATCH", &url, "application/merge-patch+json", r#"{"metadata": {"labels": {"x": "1"}}}"#).await;
            assert_eq!((s, w.len()), (StatusCode::OK, 0), "{ty}: {v}");
        }
    }
    // Repeated keys in merge, strategic and apply bodies; a JSON patch's own keys are not an object's.
    api.ok("POST", base, Some(deploy("dup"))).await;
    let before = api.ok("GET", &format!("{base}/dup"), None).await;
    let dup = r#"{"spec": {"replicas": 2, "replicas": 4}}"#;
    for ct in ["application/merge-patch+json", "application/strategic-merge-patch+json"] {
        let (s, _, v) = fieldval_call(&api, "PATCH", &format!("{base}/dup?fieldValidation=Strict"), ct, dup).await;
        assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some(r#"strict decoding error: duplicate field "spec.replicas""#)), "{ct}");
    }
    let apply = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dup", "name": "dup"}}"#;
    let (s, _, v) = fieldval_call(&api, "PATCH", &format!("{base}/dup?fieldManager=t&fieldValidation=Strict"), "application/apply-patch+yaml", apply).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some(r#"strict decoding error: duplicate field "metadata.name""#)));
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: dup\nspec:\n  replicas: 2\n  replicas: 5\n";
    let (s, _, v) = fieldval_call(&api, "PATCH", &format!("{base}/dup?fieldManager=t&fieldValidation=Strict"), "application/apply-patch+yaml", yaml).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some(r#"strict decoding error: duplicate field "spec.replicas""#)));
    assert_eq!(api.ok("GET", &format!("{base}/dup"), None).await, before, "nothing written");
    let (s, w, v) = fieldval_call(&api, "PATCH", &format!("{base}/dup"), "application/merge-patch+json", dup).await;
    assert_eq!((s, v["spec"]["replicas"].as_i64()), (StatusCode::OK, Some(4)));
    assert_eq!(w, [r#"299 - "duplicate field \"spec.replicas\"""#]);
    let jp = r#"[{"op": "replace", "op": "replace", "path": "/spec/replicas", "value": 1}]"#;
    let (s, w, v) = fieldval_call(&api, "PATCH", &format!("{base}/dup?fieldValidation=Strict"), "application/json-patch+json", jp).await;
    assert_eq!((s, w.len(), v["spec"]["replicas"].as_i64()), (StatusCode::OK, 0, Some(1)), "{v}");
    // A server-side apply that creates is checked too.
    let mut fresh = deploy("created");
    fresh["spec"]["bogus"] = json!(1);
    let (s, _, v) = fieldval_call(&api, "PATCH", &format!("{base}/created?fieldManager=t&fieldValidation=Strict"), "application/apply-patch+yaml", &fresh.to_string()).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some(r#"strict decoding error: unknown field "spec.bogus""#)));
    let (s, _) = api.call("GET", &format!("{base}/created"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

fn update_claim(name: &str, class: Option<&str>, size: &str) -> Value {
    let mut c = json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    c
}

fn resize(size: &str) -> Option<Value> {
    Some(json!({"spec": {"resources": {"requests": {"storage": size}}}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_quota_charges_a_claim_resize() {
    let api = Api::start().await;
    api.create_ns("rs").await;
    let quotas = "/api/v1/namespaces/rs/resourcequotas";
    let hard = json!({"requests.storage": "10Gi", "gold.storageclass.storage.k8s.io/requests.storage": "3Gi"});
    api.ok("POST", quotas, Some(json!({"metadata": {"name": "storage"}, "spec": {"hard": hard}}))).await;
    let claims = "/api/v1/namespaces/rs/persistentvolumeclaims";
    api.ok("POST", claims, Some(update_claim("data", None, "2Gi"))).await;

    // Growing past the quota: 403 in kube's words (the growth is what is requested), nothing written.
    let before = store_revision(&api).await;
    let (s, v) = api.call("PATCH", &format!("{claims}/data"), resize("20Gi")).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")), "{v}");
    assert_eq!(
        v["message"],
        "persistentvolumeclaims \"data\" is forbidden: exceeded quota: storage, requested: requests.storage=18Gi, \
         used: requests.storage=2Gi, limited: requests.storage=10Gi"
    );
    assert_eq!(store_revision(&api).await, before, "a refused resize wrote something");
    let c = api.ok("GET", &format!("{claims}/data"), None).await;
    assert_eq!(c["spec"]["resources"]["requests"]["storage"], "2Gi");

    // A dry run is checked, and charges nothing.
    let (s, _) = api.call("PATCH", &format!("{claims}/data?dryRun=All"), resize("20Gi")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let v = api.ok("PATCH", &format!("{claims}/data?dryRun=All"), resize("9Gi")).await;
    assert_eq!(v["spec"]["resources"]["requests"]["storage"], "9Gi");
    assert_eq!(store_revision(&api).await, before, "a dry-run resize wrote (the quota's reservation?)");

    // Within the quota: written, and the quota's usage follows with no reservation left.
    let v = api.ok("PATCH", &format!("{claims}/data"), resize("8Gi")).await;
    assert_eq!(v["spec"]["resources"]["requests"]["storage"], "8Gi");
    let q = api.ok("GET", &format!("{quotas}/storage"), None).await;
    assert_eq!(q["status"]["used"]["requests.storage"], "8Gi", "{q}");
    assert!(q["status"].get("pendingCharges").is_none(), "{q}");
    // The rest of the quota is 2Gi: a PUT of the whole claim at 11Gi is refused, at 10Gi admitted.
    let mut whole = api.ok("GET", &format!("{claims}/data"), None).await;
    whole["spec"]["resources"]["requests"]["storage"] = json!("11Gi");
    let (s, v) = api.call("PUT", &format!("{claims}/data"), Some(whole.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    whole["spec"]["resources"]["requests"]["storage"] = json!("10Gi");
    api.ok("PUT", &format!("{claims}/data"), Some(whole)).await;

    // A storage class's own limit, on a resize of a claim of that class.
    api.ok("PATCH", &format!("{claims}/data"), resize("6Gi")).await;
    api.ok("POST", claims, Some(update_claim("fast", Some("gold"), "1Gi"))).await;
    let (s, v) = api.call("PATCH", &format!("{claims}/fast"), resize("4Gi")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["message"],
        "persistentvolumeclaims \"fast\" is forbidden: exceeded quota: storage, \
         requested: gold.storageclass.storage.k8s.io/requests.storage=3Gi, \
         used: gold.storageclass.storage.k8s.io/requests.storage=1Gi, \
         limited: gold.storageclass.storage.k8s.io/requests.storage=3Gi"
    );
    api.ok("PATCH", &format!("{claims}/fast"), resize("3Gi")).await;
    let q = api.ok("GET", &format!("{quotas}/storage"), None).await;
    assert_eq!(
        q["status"]["used"],
        json!({"requests.storage": "9Gi", "gold.storageclass.storage.k8s.io/requests.storage": "3Gi"}),
        "{q}"
    );

    // Shrinking and status writes add nothing: the only write is the claim's own.
    for (path, body) in [
        (format!("{claims}/data/status"), json!({"status": {"phase": "Bound", "capacity": {"storage": "10Gi"}}})),
        (format!("{claims}/data"), json!({"metadata": {"labels": {"tier": "db"}}})),
        (format!("{claims}/data"), json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}})),
    ] {
        let before = store_revision(&api).await.parse::<i64>().unwrap();
        let v = api.ok("PATCH", &path, Some(body)).await;
        assert_eq!(rv(&v), before + 1, "{path}: more than the object was written");
        assert_eq!(store_revision(&api).await.parse::<i64>().unwrap(), before + 1, "{path}: a quota write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_quota_charges_a_service_type_change_not_a_finished_pod() {
    let api = Api::start().await;
    api.create_ns("st").await;
    let hard = json!({"services.loadbalancers": "0", "services.nodeports": "1", "pods": "1"});
    api.ok("POST", "/api/v1/namespaces/st/resourcequotas", Some(json!({"metadata": {"name": "net"}, "spec": {"hard": hard}}))).await;
    let svcs = "/api/v1/namespaces/st/services";
    let svc = json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443}]}});
    api.ok("POST", svcs, Some(svc)).await;
    let (s, v) = api.call("PATCH", &format!("{svcs}/web"), Some(json!({"spec": {"type": "LoadBalancer"}}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"].as_str().unwrap().starts_with(
            "services \"web\" is forbidden: exceeded quota: net, requested: services.loadbalancers=1,services.nodeports=2"
        ),
        "{v}"
    );
    let (s, v) = api.call("PATCH", &format!("{svcs}/web"), Some(json!({"spec": {"type": "NodePort"}}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "two node ports over a quota of one: {v}");
    let v = api.ok("GET", &format!("{svcs}/web"), None).await;
    assert_eq!(v["spec"]["type"], "ClusterIP");

    // A pod finishing frees its usage: nothing to charge, and the pod quota is not written.
    let pods = "/api/v1/namespaces/st/pods";
    api.ok("POST", pods, Some(pod("job"))).await;
    let q = api.ok("GET", "/api/v1/namespaces/st/resourcequotas/net", None).await;
    api.ok("PATCH", &format!("{pods}/job/status"), Some(json!({"status": {"phase": "Succeeded"}}))).await;
    let after = api.ok("GET", "/api/v1/namespaces/st/resourcequotas/net", None).await;
    assert_eq!(after["metadata"]["resourceVersion"], q["metadata"]["resourceVersion"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_limitrange_bounds_a_claim_resize_only() {
    let api = Api::start().await;
    api.create_ns("lu").await;
    let claims = "/api/v1/namespaces/lu/persistentvolumeclaims";
    api.ok("POST", claims, Some(update_claim("old", None, "50Gi"))).await;
    api.ok("POST", claims, Some(update_claim("data", None, "5Gi"))).await;
    let range = json!({"metadata": {"name": "lr"}, "spec": {"limits": [
        {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}},
        {"type": "Container", "max": {"cpu": "100m"}},
    ]}});
    api.ok("POST", "/api/v1/namespaces/lu/limitranges", Some(range)).await;
    let (s, v) = api.call("PATCH", &format!("{claims}/data"), resize("20Gi")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["message"],
        "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"
    );
    let c = api.ok("GET", &format!("{claims}/data"), None).await;
    assert_eq!(c["spec"]["resources"]["requests"]["storage"], "5Gi");
    api.ok("PATCH", &format!("{claims}/data"), resize("10Gi")).await;
    // A claim from before the LimitRange is not re-checked unless it is resized.
    api.ok("PATCH", &format!("{claims}/old"), Some(json!({"metadata": {"labels": {"keep": "yes"}}}))).await;
    let (s, _) = api.call("PATCH", &format!("{claims}/old"), resize("60Gi")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Pods are neither re-defaulted nor re-checked on update.
    api.ok("PATCH", "/api/v1/namespaces/lu/limitranges/lr", Some(json!({"spec": {"limits": [
        {"type": "Container", "max": {"cpu": "100m"}, "default": {"cpu": "50m"}},
    ]}}))).await;
    api.ok("DELETE", "/api/v1/namespaces/lu/limitranges/lr", None).await;
    let p = api.ok("POST", "/api/v1/namespaces/lu/pods", Some(sized_pod("big", json!({"limits": {"cpu": "1"}})))).await;
    api.ok("POST", "/api/v1/namespaces/lu/limitranges", Some(json!({"metadata": {"name": "strict"}, "spec": {"limits": [
        {"type": "Container", "max": {"cpu": "100m"}, "default": {"cpu": "50m", "memory": "64Mi"}},
    ]}}))).await;
    let v = api.ok("PATCH", "/api/v1/namespaces/lu/pods/big", Some(json!({"metadata": {"labels": {"a": "b"}}}))).await;
    assert_eq!(v["spec"]["containers"][0]["resources"], p["spec"]["containers"][0]["resources"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_quota_concurrent_resizes_take_exactly_the_rest() {
    let api = Api::start().await;
    api.create_ns("grow").await;
    let quota = "/api/v1/namespaces/grow/resourcequotas/storage";
    api.ok("POST", "/api/v1/namespaces/grow/resourcequotas", Some(json!({"metadata": {"name": "storage"}, "spec": {"hard": {"requests.storage": "15Gi"}}}))).await;
    let claims = "/api/v1/namespaces/grow/persistentvolumeclaims";
    for i in 0..10 {
        api.ok("POST", claims, Some(update_claim(&format!("c{i}"), None, "1Gi"))).await;
    }
    // A second apiserver on the same store; resizes race through both.
    let storage = EtcdStorage::connect(std::slice::from_ref(&api.endpoint)).await.unwrap();
    let registry = Arc::new(Registry::new(apiserver::storage::layered(storage)).unwrap());
    let auth = TokenAuth::parse(&format!("{TOKEN},admin,admin,\"system:masters\"\n")).unwrap();
    let second = router(AppState { registry, auth: Some(Arc::new(auth)) });
    let patch = |router: Router, name: String, size: String| async move {
        let req = Request::builder()
            .method("PATCH")
            .uri(format!("/api/v1/namespaces/grow/persistentvolumeclaims/{name}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/merge-patch+json")
            .body(Body::from(resize(&size).unwrap().to_string()))
            .unwrap();
        router.oneshot(req).await.unwrap().status().as_u16()
    };
    let spawn_all = |targets: Vec<(String, String)>| {
        let (first, second) = (api.router.clone(), second.clone());
        targets
            .into_iter()
            .enumerate()
            .map(|(i, (name, size))| tokio::spawn(patch(if i % 2 == 0 { first.clone() } else { second.clone() }, name, size)))
            .collect::<Vec<_>>()
    };
    // Ten claims each growing by 1Gi with 5Gi left: exactly five make it.
    let mut codes = Vec::new();
    for t in spawn_all((0..10).map(|i| (format!("c{i}"), "2Gi".to_string())).collect()) {
        codes.push(t.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, [200, 200, 200, 200, 200, 403, 403, 403, 403, 403]);
    let q = api.ok("GET", quota, None).await;
    assert_eq!(q["status"]["used"], json!({"requests.storage": "15Gi"}));
    assert!(q["status"].get("pendingCharges").is_none(), "{q}");

    // Racing resizes of one claim: each lost race is admitted again against the new state,
    // and whatever lands last is what the quota counts.
    api.ok("PATCH", quota, Some(json!({"spec": {"hard": {"requests.storage": "100Gi"}}}))).await;
    let mut codes = Vec::new();
    for t in spawn_all((3..11).map(|g| ("c0".to_string(), format!("{g}Gi"))).collect()) {
        codes.push(t.await.unwrap());
    }
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    // A shrink that lands last is not settled (it charged nothing): the next charge recounts.
    api.ok("PATCH", &format!("{claims}/c9"), resize("3Gi")).await;
    let list = api.ok("GET", claims, None).await;
    let total: i64 = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["spec"]["resources"]["requests"]["storage"].as_str().unwrap().trim_end_matches("Gi").parse::<i64>().unwrap())
        .sum();
    let q = api.ok("GET", quota, None).await;
    assert_eq!(q["status"]["used"], json!({"requests.storage": format!("{total}Gi")}));
    assert!(q["status"].get("pendingCharges").is_none(), "{q}");
}
