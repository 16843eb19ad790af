//! End-to-end tests of the order service; see `tests/`.
