//! A worker: one thread, one mio event loop, every session of its share of the traffic.
