//! Framing codec (placeholder).
