//! # meshlb-chaos: the lab
//!
//! Place in the architecture: the instrument every feature is proven and
//! measured with. It builds hosts as Linux network namespaces joined by veth
//! pairs and a bridge, runs real third-party software in them (bird2, frr,
//! gobgpd, keepalived, serf), injects faults, and observes the result.
