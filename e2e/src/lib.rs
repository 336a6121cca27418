//! Test-only support for Lifeboat's end-to-end tests: the pieces of a node that the
//! local environment lacks (see `e2e/local`), and helpers the scenario tests share.

pub mod node;
pub mod testing;
