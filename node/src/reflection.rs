//! gRPC server reflection (`grpc.reflection.v1` and the older `v1alpha` that most
//! clients still speak): an operator with grpcurl, or a bank's API tooling, lists a
//! node's services and messages from the node itself, without the `.proto` files.

use tonic_reflection::server::{v1, v1alpha, Builder, Error};

/// The names every node advertises besides its own services.
const SHELL_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn builder(services: &[&str]) -> Builder<'static> {
    let mut b = Builder::configure()
        .register_encoded_file_descriptor_set(ordo_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    // Only what this node serves: the descriptor set holds every Ordo service.
    for name in services.iter().chain(SHELL_SERVICES.iter()) {
        b = b.with_service_name(*name);
    }
    b
}

/// `grpc.reflection.v1.ServerReflection`, advertising `services` (fully qualified names)
/// and the health and reflection services.
pub fn v1(
    services: &[&str],
) -> Result<v1::ServerReflectionServer<impl v1::ServerReflection>, Error> {
    builder(services).build_v1()
}

/// `grpc.reflection.v1alpha.ServerReflection`, for clients that predate v1.
pub fn v1alpha(
    services: &[&str],
) -> Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>, Error> {
    builder(services).build_v1alpha()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_descriptors_build() {
        assert!(super::v1(&["ordo.orderer.AtomicBroadcast"]).is_ok());
        assert!(super::v1alpha(&["ordo.query.Query"]).is_ok());
    }
}
