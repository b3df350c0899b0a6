//! negotiation (todo)
