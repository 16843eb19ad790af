//! Examples of using order-core; see `examples/`.
