//! Command-line parsing (placeholder, filled in by the foundation work).
