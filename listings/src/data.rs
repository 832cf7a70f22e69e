//! The book corpus (placeholder).
