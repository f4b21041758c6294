//! Generates the prost/tonic code from `proto/*.proto` with the vendored `protoc`, so the
//! build needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded, so setting the variable here races with nothing.
    std::env::set_var("PROTOC", protoc);
    let protos = [
        "proto/common.proto",
        "proto/orderer.proto",
        "proto/admin.proto",
        "proto/transaction.proto",
        "proto/query.proto",
        "proto/cluster.proto",
        "proto/kafka.proto",
        "proto/gateway.proto",
        "proto/chaincode.proto",
        "proto/discovery.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // The descriptor set is embedded for gRPC server reflection (grpcurl, Postman and
    // other tools list the services and call them without the .proto files).
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .bytes(".")
        .file_descriptor_set_path(out_dir.join("ordo_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
