//! Cross-crate end-to-end tests of the order service live in `tests/`.
