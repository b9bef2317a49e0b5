//! Shared helpers for the tests against real services.
