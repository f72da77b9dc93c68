//! Compiles `proto/command.proto` with protox (a protobuf compiler written in Rust), so a fresh
//! machine builds Weir with cargo alone: no `protoc` binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/command.proto");
    let descriptors = protox::compile(["proto/command.proto"], ["proto"])?;
    prost_build::Config::new()
        // Their Debug is written by hand (in `wire`), so private keys and ticket secrets never
        // reach a log line or an error through `{:?}`.
        .skip_debug(["weir.v1.Certificate", "weir.v1.TicketKey"])
        .compile_fds(descriptors)?;
    Ok(())
}
