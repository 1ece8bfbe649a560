//! The C ABI (docs/embedding.md, "C").
