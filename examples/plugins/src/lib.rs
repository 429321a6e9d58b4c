//! Example plugins built on the SDK.
