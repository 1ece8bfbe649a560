//! Integration tests of the C ABI (docs/embedding.md, "C"): one binary.

mod abi;
mod example;
mod faults;
mod header;
mod support;
