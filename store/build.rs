//! Compiles the etcd v3 API protos (and our internal raft command proto) with tonic/prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Use the vendored protoc unless the caller provided one, so a fresh
    // machine needs no system protoc.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        std::env::set_var("PROTOC", protoc);
    }

    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &[
                "proto/mvccpb/kv.proto",
                "proto/authpb/auth.proto",
                "proto/etcdserverpb/rpc.proto",
                "proto/storepb/internal.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
