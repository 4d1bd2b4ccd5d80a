//! Inspecting PKI files.
