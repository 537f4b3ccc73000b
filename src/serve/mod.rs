//! Serving over HTTP on the local machine, in-process: no Python, no nginx, no network.
//!
//! Owns: [`archive`], the scene archive `eocube demo` reads through the real pipeline (a STAC
//! API plus range-capable file serving on 127.0.0.1). A tile server for viewing cubes is meant
//! to live here too, as a sibling module sharing the hyper plumbing.
//!
//! Must not touch: what is served. Items, collections and files come from the caller (e.g.
//! `synth`); the catalog client and the COG reader are this module's clients, never its library,
//! so that tests of them against this server test two independent implementations.

pub mod archive;

pub use archive::{ArchiveServer, ServeError};
