//! IPC kernel tests (kernel threads).
