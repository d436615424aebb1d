//! From a container's spec to what the process runtime runs: argv, environment, working
//! directory. Pure; an error here is the message of a `CreateContainerConfigError`.
//!
//! Kubernetes semantics: `command` replaces the image's entrypoint and `args` its arguments. A
//! host process has no image, hence no entrypoint: a container without `command` cannot run.
//! `$(VAR)` in command, args and env values expands to a variable defined earlier in `env`
//! (`$$` is a literal `$`; an unknown `$(X)` stays as written), as the kubelet does.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use super::runtime::Launch;

/// The argv, environment and directory of `container` in `pod`; `pod_ip`/`host_ip` answer
/// the `status.podIP`/`status.hostIP` field references.
pub fn launch(pod: &Pod, container: &Container, pod_ip: &str, host_ip: &str) -> Result<Launch, String> {
    let command = container.command.clone().unwrap_or_default();
    if command.is_empty() {
        let what = if container.args.as_ref().is_some_and(|a| !a.is_empty()) { "args but no command" } else { "no command" };
        return Err(format!(
            "container {:?} has {what}: the process runtime runs `command` (+ `args`) as a host process and has no \
             image entrypoint to fall back on; set spec.containers[].command",
            container.name
        ));
    }
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(format!("container {:?}: envFrom is not supported by the process runtime yet", container.name));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let mut defined: HashMap<String, String> = HashMap::new();
    for var in container.env.iter().flatten() {
        let value = env_value(pod, var, pod_ip, host_ip).map_err(|e| format!("container {:?}: env {}: {e}", container.name, var.name))?;
        let value = expand(&value, &defined);
        defined.insert(var.name.clone(), value.clone());
        env.retain(|(k, _)| *k != var.name);
        env.push((var.name.clone(), value));
    }
    let argv = command.iter().chain(container.args.iter().flatten()).map(|s| expand(s, &defined)).collect();
    Ok(Launch {
        argv,
        env,
        working_dir: container.working_dir.as_deref().filter(|d| !d.is_empty()).map(PathBuf::from),
        image: container.image.clone().unwrap_or_default(),
    })
}

/// One variable's value: a literal, or a field of the pod.
fn env_value(pod: &Pod, var: &EnvVar, pod_ip: &str, host_ip: &str) -> Result<String, String> {
    let Some(from) = &var.value_from else { return Ok(var.value.clone().unwrap_or_default()) };
    let Some(field) = &from.field_ref else {
        let kind = if from.secret_key_ref.is_some() {
            "secretKeyRef"
        } else if from.config_map_key_ref.is_some() {
            "configMapKeyRef"
        } else if from.resource_field_ref.is_some() {
            "resourceFieldRef"
        } else {
            "this valueFrom source"
        };
        return Err(format!("valueFrom.{kind} is not supported by the process runtime yet (only fieldRef)"));
    };
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let map_key = |prefix: &str| path.strip_prefix(prefix).and_then(|rest| rest.strip_prefix("['")).and_then(|r| r.strip_suffix("']"));
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => {
            if let Some(k) = map_key("metadata.labels") {
                meta.labels.as_ref().and_then(|l| l.get(k).cloned()).unwrap_or_default()
            } else if let Some(k) = map_key("metadata.annotations") {
                meta.annotations.as_ref().and_then(|a| a.get(k).cloned()).unwrap_or_default()
            } else {
                return Err(format!("valueFrom.fieldRef.fieldPath {path:?} is not supported"));
            }
        }
    };
    Ok(value)
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` of a defined variable becomes its value, `$$`
/// becomes `$`, anything else stays as written.
fn expand(input: &str, defined: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(close) = after.strip_prefix('(').and_then(|t| t.find(')')) {
            let name = &after[1..1 + close];
            match defined.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[i..i + 2 + close + 1]),
            }
            rest = &after[close + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVarSource, ObjectFieldSelector, PodSpec, SecretKeySelector};

    fn pod(container: Container) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("prod".into());
        p.metadata.uid = Some("u-1".into());
        p.metadata.labels = Some([("app".to_string(), "shop".to_string())].into());
        p.spec = Some(PodSpec { containers: vec![container], node_name: Some("n1".into()), ..Default::default() });
        p
    }

    fn container(command: &[&str], args: &[&str]) -> Container {
        Container {
            name: "main".into(),
            image: Some("busybox".into()),
            command: (!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()),
            args: (!args.is_empty()).then(|| args.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn command_replaces_the_entrypoint_and_args_follow() {
        let c = container(&["sh", "-c"], &["echo hi"]);
        let l = launch(&pod(c.clone()), &c, "127.0.0.1", "127.0.0.1").unwrap();
        assert_eq!(l.argv, ["sh", "-c", "echo hi"]);
        assert_eq!(l.image, "busybox");
        assert_eq!(l.working_dir, None);
    }

    #[test]
    fn without_a_command_there_is_nothing_to_run() {
        let only_args = container(&[], &["--port", "80"]);
        let e = launch(&pod(only_args.clone()), &only_args, "", "").unwrap_err();
        assert!(e.contains("args but no command") && e.contains("no image entrypoint"), "{e}");
        let neither = container(&[], &[]);
        let e = launch(&pod(neither.clone()), &neither, "", "").unwrap_err();
        assert!(e.contains("has no command"), "{e}");
    }

    #[test]
    fn env_values_field_refs_and_expansion() {
        let mut c = container(&["echo", "$(GREETING)", "$(MISSING)", "$$(GREETING)"], &[]);
        c.env = Some(vec![
            EnvVar { name: "WHO".into(), value: Some("world".into()), ..Default::default() },
            EnvVar { name: "GREETING".into(), value: Some("hello $(WHO)".into()), ..Default::default() },
            field("POD", "metadata.name"),
            field("NS", "metadata.namespace"),
            field("IP", "status.podIP"),
            field("NODE", "spec.nodeName"),
            field("APP", "metadata.labels['app']"),
        ]);
        let l = launch(&pod(c.clone()), &c, "10.0.0.7", "127.0.0.1").unwrap();
        assert_eq!(l.argv, ["echo", "hello world", "$(MISSING)", "$(GREETING)"]);
        let env: HashMap<_, _> = l.env.into_iter().collect();
        assert_eq!(env["POD"], "web");
        assert_eq!(env["NS"], "prod");
        assert_eq!(env["IP"], "10.0.0.7");
        assert_eq!(env["NODE"], "n1");
        assert_eq!(env["APP"], "shop");
    }

    #[test]
    fn unsupported_sources_are_clear_errors() {
        let mut c = container(&["true"], &[]);
        c.env = Some(vec![EnvVar {
            name: "PASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector { name: "db".into(), key: "pw".into(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let e = launch(&pod(c.clone()), &c, "", "").unwrap_err();
        assert!(e.contains("env PASSWORD") && e.contains("secretKeyRef is not supported"), "{e}");
        c.env = Some(vec![field("X", "spec.hostname")]);
        let e = launch(&pod(c.clone()), &c, "", "").unwrap_err();
        assert!(e.contains("\"spec.hostname\" is not supported"), "{e}");
    }

    #[test]
    fn expansion_edge_cases() {
        let defined: HashMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("$(A)$(A)", &defined), "11");
        assert_eq!(expand("cost: $5 and $(A", &defined), "cost: $5 and $(A");
        assert_eq!(expand("$$$(A)", &defined), "$1");
        assert_eq!(expand("", &defined), "");
    }
}
