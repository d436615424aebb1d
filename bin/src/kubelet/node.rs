//! The kubelet's Node and its heartbeat: registration (create if absent), the node status
//! (capacity, conditions, nodeInfo, addresses) and the node Lease in `kube-node-lease`,
//! both renewed every `HEARTBEAT`. The objects are built by pure functions from
//! `MachineInfo` and the clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

use super::Error;

/// How often the node status and the lease are renewed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// The namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a lease is valid without renewal (kubelet's default).
const LEASE_DURATION_SECONDS: i32 = 40;
/// `nodeInfo.kubeletVersion`.
pub const KUBELET_VERSION: &str = concat!("v1.37.0-ferrokube.", env!("CARGO_PKG_VERSION"));
/// The node's address, and every pod's (processes share the host's network).
pub const NODE_IP: &str = "127.0.0.1";
/// Pods a node accepts (kubelet's default --max-pods).
const MAX_PODS: &str = "110";

/// What the node reports about the machine, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// The machine's hostname.
    pub hostname: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// MemTotal of /proc/meminfo, in KiB.
    pub memory_kib: u64,
    /// Size of the filesystem holding the root dir, in bytes.
    pub ephemeral_storage_bytes: Option<u64>,
    /// PRETTY_NAME of /etc/os-release.
    pub os_image: String,
    /// /proc/sys/kernel/osrelease.
    pub kernel_version: String,
    /// Kubernetes' name of the CPU architecture (amd64, arm64, ...).
    pub architecture: String,
    /// /etc/machine-id.
    pub machine_id: String,
    /// /proc/sys/kernel/random/boot_id.
    pub boot_id: String,
    /// `containerRuntimeVersion`.
    pub runtime_version: String,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// MemTotal (KiB) from the text of /proc/meminfo.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// PRETTY_NAME from the text of /etc/os-release.
pub fn pretty_name(os_release: &str) -> Option<String> {
    let line = os_release.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_string())
}

/// The machine's hostname, lowercased (the default node name).
pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname").or_else(|| read_trimmed("/etc/hostname")).unwrap_or_else(|| "localhost".into()).to_lowercase()
}

/// Kubernetes' (Go's) name of a Rust target architecture.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn filesystem_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own; `c` is a valid NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_blocks as u64 * s.f_frsize as u64)
}

impl MachineInfo {
    /// Reads /proc and /etc (missing files give neutral values, never an error).
    pub fn read(root_dir: &Path, runtime_version: String) -> Self {
        MachineInfo {
            hostname: hostname(),
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_kib: std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(mem_total_kib).unwrap_or(0),
            ephemeral_storage_bytes: filesystem_bytes(root_dir),
            os_image: std::fs::read_to_string("/etc/os-release").ok().as_deref().and_then(pretty_name).unwrap_or_else(|| "Linux".into()),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            machine_id: read_trimmed("/etc/machine-id").unwrap_or_default(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            runtime_version,
        }
    }
}

/// The Node to create: name and the well-known labels.
pub fn node_object(name: &str, machine: &MachineInfo) -> Node {
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), machine.architecture.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), machine.architecture.clone()),
    ]);
    Node { metadata: ObjectMeta { name: Some(name.into()), labels: Some(labels), ..Default::default() }, ..Default::default() }
}

fn secs(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The node's status at `now`; conditions keep their lastTransitionTime from `old` while
/// their status stays the same.
pub fn node_status(machine: &MachineInfo, old: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
    let mut capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(machine.cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Ki", machine.memory_kib))),
        ("pods".to_string(), Quantity(MAX_PODS.into())),
    ]);
    if let Some(bytes) = machine.ephemeral_storage_bytes {
        capacity.insert("ephemeral-storage".into(), Quantity(bytes.to_string()));
    }
    let old_conditions = old.and_then(|s| s.conditions.clone()).unwrap_or_default();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        let since = old_conditions.iter().find(|c| c.type_ == kind && c.status == status).and_then(|c| c.last_transition_time.clone());
        NodeCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(secs(now)),
            last_transition_time: since.or(Some(secs(now))),
        }
    };
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: NODE_IP.into() },
            NodeAddress { type_: "Hostname".into(), address: machine.hostname.clone() },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: machine.architecture.clone(),
            boot_id: machine.boot_id.clone(),
            container_runtime_version: machine.runtime_version.clone(),
            kernel_version: machine.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: machine.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: machine.os_image.clone(),
            system_uuid: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The node's lease renewed at `now` (a new one when `old` is None), owned by the node so it
/// goes with it.
pub fn lease(node: &Node, old: Option<&Lease>, now: Timestamp) -> Lease {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut lease = old.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: node.metadata.uid.clone().map(|uid| {
                vec![OwnerReference { api_version: "v1".into(), kind: "Node".into(), name: name.clone(), uid, ..Default::default() }]
            }),
            ..Default::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(name);
    spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// Registers the node if absent and writes its status and lease; the status written is
/// returned (the next beat keeps its transition times).
pub async fn beat(client: &Client, name: &str, machine: &MachineInfo, last: Option<&NodeStatus>) -> Result<NodeStatus, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = match nodes.get_opt(name).await? {
        Some(n) => n,
        None => {
            tracing::info!(node = name, "registering the node");
            match nodes.create(&PostParams::default(), &node_object(name, machine)).await {
                Ok(n) => n,
                // Created concurrently (another start of ours): use it.
                Err(kube::Error::Api(s)) if s.code == 409 => nodes.get(name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let old = last.or(node.status.as_ref());
    let status = node_status(machine, old, Timestamp::now());
    let patch = serde_json::json!({ "status": status });
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;

    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    match leases.get_opt(name).await? {
        Some(old) => {
            leases.replace(name, &PostParams::default(), &lease(&node, Some(&old), Timestamp::now())).await?;
        }
        None => {
            leases.create(&PostParams::default(), &lease(&node, None, Timestamp::now())).await?;
        }
    }
    Ok(status)
}

/// Creates the `kube-node-lease` namespace if the apiserver does not have it.
pub async fn ensure_lease_namespace(client: &Client) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(LEASE_NAMESPACE).await?.is_none() {
        let ns = Namespace { metadata: ObjectMeta { name: Some(LEASE_NAMESPACE.into()), ..Default::default() }, ..Default::default() };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Beats every `HEARTBEAT` until `stop` resolves; failures are logged and retried.
pub async fn heartbeat(
    client: Client,
    name: String,
    machine: MachineInfo,
    mut last: Option<NodeStatus>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        // A stuck apiserver must neither delay shutdown nor pile up beats.
        tokio::select! {
            _ = &mut stop => return,
            r = tokio::time::timeout(HEARTBEAT, beat(&client, &name, &machine, last.as_ref())) => match r {
                Ok(Ok(status)) => last = Some(status),
                Ok(Err(e)) => tracing::warn!(node = %name, error = %e, "node heartbeat failed; retrying"),
                Err(_) => tracing::warn!(node = %name, "node heartbeat timed out; retrying"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> MachineInfo {
        MachineInfo {
            hostname: "vm".into(),
            cpus: 4,
            memory_kib: 8_000_000,
            ephemeral_storage_bytes: Some(1 << 30),
            os_image: "Debian GNU/Linux 13 (trixie)".into(),
            kernel_version: "6.1.0".into(),
            architecture: "amd64".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            runtime_version: "process://ferrokube".into(),
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn proc_and_etc_parsing() {
        assert_eq!(mem_total_kib("MemTotal:        8023412 kB\nMemFree: 1 kB\n"), Some(8023412));
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
        assert_eq!(
            pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n").as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }

    #[test]
    fn node_has_the_well_known_labels() {
        let n = node_object("vm", &machine());
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "vm");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
    }

    #[test]
    fn status_reports_capacity_readiness_and_keeps_transition_times() {
        let s = node_status(&machine(), None, t(0));
        let cap = s.capacity.clone().unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "8000000Ki");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(s.allocatable, s.capacity);
        let ready = s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap().clone();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
        for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == kind).unwrap().status, "False");
        }
        let info = s.node_info.clone().unwrap();
        assert_eq!(info.container_runtime_version, "process://ferrokube");
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(s.addresses.as_ref().unwrap()[0].address, "127.0.0.1");

        let later = node_status(&machine(), Some(&s), t(10));
        let ready2 = later.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready2.last_heartbeat_time, Some(Time(t(10))));
        assert_eq!(ready2.last_transition_time, Some(Time(t(0))), "still Ready: no transition");
    }

    #[test]
    fn lease_is_renewed_and_owned_by_the_node() {
        let mut node = node_object("vm", &machine());
        node.metadata.uid = Some("node-uid".into());
        let l = lease(&node, None, t(0));
        assert_eq!(l.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        assert_eq!(l.metadata.owner_references.as_ref().unwrap()[0].uid, "node-uid");
        let spec = l.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("vm"));
        assert_eq!(spec.renew_time, Some(MicroTime(t(0))));
        let renewed = lease(&node, Some(&l), t(10));
        assert_eq!(renewed.spec.unwrap().renew_time, Some(MicroTime(t(10))));
        assert_eq!(renewed.metadata.owner_references, l.metadata.owner_references);
    }
}
