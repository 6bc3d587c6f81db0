//! `meshlb-lab`: build labs, inject faults, run benchmarks.

fn main() {}
