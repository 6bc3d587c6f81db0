//! Compiles proto/meshlb/v1/*.proto with protox (no protoc needed) into
//! prost messages and tonic stubs, and keeps the encoded descriptor set for
//! server reflection.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["meshlb/v1/introspection.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("meshlb_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        // meshlbctl prints them as JSON and YAML.
        .type_attribute(".meshlb.v1", "#[derive(serde::Serialize)]")
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
