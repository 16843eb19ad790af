//! `order-http`'s integration tests, in one binary: the API through a real socket, payments
//! end to end, the binary as an operator runs it, and the chaos run.

#![allow(
    clippy::too_many_lines,
    reason = "table-driven tests read best as one table"
)]

mod api;
mod binary;
mod cancel;
mod chaos;
mod payments;
