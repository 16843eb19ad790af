//! Command-line client of the order service: filled by the `order-cli` issue.
