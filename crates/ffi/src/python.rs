//! The Python package `testpilot` (docs/embedding.md, "Python").
