//! The main process: command socket, authoritative State, worker supervision.
