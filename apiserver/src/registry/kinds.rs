//! The table of kinds. Adding a kind = a schema file in schemas/ plus a row here (and a
//! strategy in `strategies.rs` when the defaults are not enough).

use crate::registry::kind::Kind;
use crate::registry::strategies::{
    self as st, DefaultStrategy, DeploymentStrategy, EventStrategy, NamespaceStrategy, NodeStrategy, PodStrategy, RulesStrategy,
    SecretStrategy, ServiceStrategy,
};

macro_rules! schema {
    ($file:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/", $file))
    };
}

/// Kinds a controller reconciles from a spec and reports on in status.
static SPEC_AND_STATUS: RulesStrategy = RulesStrategy { generation: true, reset_status: true, ..RulesStrategy::PLAIN };
static PERSISTENT_VOLUME: RulesStrategy = RulesStrategy { reset_status: true, ..RulesStrategy::PLAIN };
// kube-apiserver lets a claim change only its requests once created; the fields users trip
// over are these (volumeName is left out: the binder sets it once).
static PERSISTENT_VOLUME_CLAIM: RulesStrategy = RulesStrategy {
    reset_status: true,
    immutable: &["spec.storageClassName", "spec.accessModes", "spec.selector", "spec.volumeMode"],
    validate: st::validate_persistentvolumeclaim,
    ..RulesStrategy::PLAIN
};
static RESOURCE_QUOTA: RulesStrategy =
    RulesStrategy { reset_status: true, validate: st::validate_resourcequota, ..RulesStrategy::PLAIN };
static LIMIT_RANGE: RulesStrategy = RulesStrategy { validate: st::validate_limitrange, ..RulesStrategy::PLAIN };
static REPLICATION_CONTROLLER: RulesStrategy = RulesStrategy {
    prepare: st::prepare_replicationcontroller,
    validate: st::validate_replicationcontroller,
    status_zeroes: &["replicas"],
    ..SPEC_AND_STATUS
};
static REPLICA_SET: RulesStrategy = RulesStrategy {
    prepare: st::prepare_replicas,
    validate: st::validate_apps_workload,
    immutable: &["spec.selector"],
    status_zeroes: &["replicas"],
    ..SPEC_AND_STATUS
};
static STATEFUL_SET: RulesStrategy = RulesStrategy {
    prepare: st::prepare_statefulset,
    validate: st::validate_apps_workload,
    immutable: &["spec.selector", "spec.serviceName", "spec.podManagementPolicy", "spec.volumeClaimTemplates"],
    status_zeroes: &["replicas", "availableReplicas"],
    ..SPEC_AND_STATUS
};
static DAEMON_SET: RulesStrategy = RulesStrategy {
    prepare: st::prepare_daemonset,
    validate: st::validate_apps_workload,
    immutable: &["spec.selector"],
    status_zeroes: &["currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"],
    ..SPEC_AND_STATUS
};
// A revision's data is the snapshot it names; only its number may change.
static CONTROLLER_REVISION: RulesStrategy = RulesStrategy { immutable: &["data"], ..RulesStrategy::PLAIN };
static JOB: RulesStrategy = RulesStrategy {
    prepare: st::prepare_job,
    validate: st::validate_job,
    immutable: &["spec.selector", "spec.template", "spec.completions", "spec.completionMode"],
    ..SPEC_AND_STATUS
};
static CRON_JOB: RulesStrategy =
    RulesStrategy { prepare: st::prepare_cronjob, validate: st::validate_cronjob, ..SPEC_AND_STATUS };
static POD_DISRUPTION_BUDGET: RulesStrategy = RulesStrategy {
    validate: st::validate_pdb,
    status_zeroes: &["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"],
    ..SPEC_AND_STATUS
};
static HORIZONTAL_POD_AUTOSCALER: RulesStrategy = RulesStrategy {
    prepare: st::prepare_hpa,
    validate: st::validate_hpa,
    status_zeroes: &["desiredReplicas"],
    ..SPEC_AND_STATUS
};

static KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        kind: "Namespace",
        resource: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        schema: schema!("namespace.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &NamespaceStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Pod",
        resource: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        schema: schema!("pod.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &PodStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        resource: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        schema: schema!("configmap.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &DefaultStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Secret",
        resource: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        schema: schema!("secret.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &SecretStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Service",
        resource: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        schema: schema!("service.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &ServiceStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        resource: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        schema: schema!("serviceaccount.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &DefaultStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Node",
        resource: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        schema: schema!("node.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &NodeStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Event",
        resource: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        schema: schema!("event.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &EventStrategy,
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        resource: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        schema: schema!("deployment.json"),
        status_subresource: true,
        scale_subresource: true,
        strategy: &DeploymentStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Endpoints",
        resource: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        schema: schema!("endpoints.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &DefaultStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        resource: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short_names: &["pv"],
        schema: schema!("persistentvolume.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &PERSISTENT_VOLUME,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        resource: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        namespaced: true,
        short_names: &["pvc"],
        schema: schema!("persistentvolumeclaim.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &PERSISTENT_VOLUME_CLAIM,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ResourceQuota",
        resource: "resourcequotas",
        singular: "resourcequota",
        namespaced: true,
        short_names: &["quota"],
        schema: schema!("resourcequota.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &RESOURCE_QUOTA,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "LimitRange",
        resource: "limitranges",
        singular: "limitrange",
        namespaced: true,
        short_names: &["limits"],
        schema: schema!("limitrange.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &LIMIT_RANGE,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ReplicationController",
        resource: "replicationcontrollers",
        singular: "replicationcontroller",
        namespaced: true,
        short_names: &["rc"],
        schema: schema!("replicationcontroller.json"),
        status_subresource: true,
        scale_subresource: true,
        strategy: &REPLICATION_CONTROLLER,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "PodTemplate",
        resource: "podtemplates",
        singular: "podtemplate",
        namespaced: true,
        short_names: &[],
        schema: schema!("podtemplate.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &DefaultStrategy,
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        resource: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        schema: schema!("replicaset.json"),
        status_subresource: true,
        scale_subresource: true,
        strategy: &REPLICA_SET,
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        resource: "statefulsets",
        singular: "statefulset",
        namespaced: true,
        short_names: &["sts"],
        schema: schema!("statefulset.json"),
        status_subresource: true,
        scale_subresource: true,
        strategy: &STATEFUL_SET,
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        resource: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        short_names: &["ds"],
        schema: schema!("daemonset.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &DAEMON_SET,
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        resource: "controllerrevisions",
        singular: "controllerrevision",
        namespaced: true,
        short_names: &[],
        schema: schema!("controllerrevision.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &CONTROLLER_REVISION,
    },
    Kind {
        group: "batch",
        version: "v1",
        kind: "Job",
        resource: "jobs",
        singular: "job",
        namespaced: true,
        short_names: &[],
        schema: schema!("job.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &JOB,
    },
    Kind {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        resource: "cronjobs",
        singular: "cronjob",
        namespaced: true,
        short_names: &["cj"],
        schema: schema!("cronjob.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &CRON_JOB,
    },
    Kind {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        resource: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        schema: schema!("lease.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &DefaultStrategy,
    },
    Kind {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        resource: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        schema: schema!("endpointslice.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &DefaultStrategy,
    },
    Kind {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        resource: "ingresses",
        singular: "ingress",
        namespaced: true,
        short_names: &["ing"],
        schema: schema!("ingress.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &SPEC_AND_STATUS,
    },
    Kind {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        resource: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        namespaced: true,
        short_names: &["pdb"],
        schema: schema!("poddisruptionbudget.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &POD_DISRUPTION_BUDGET,
    },
    Kind {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        resource: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        short_names: &["hpa"],
        schema: schema!("horizontalpodautoscaler.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &HORIZONTAL_POD_AUTOSCALER,
    },
];

/// Every kind served.
pub fn kinds() -> &'static [Kind] {
    KINDS
}

/// The kind served at `group/version/resource`.
pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.version == version && k.resource == resource)
}

/// The kind named `kind` in `group`.
pub fn lookup_kind(group: &str, kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}
