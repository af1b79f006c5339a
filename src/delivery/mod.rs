//! Delivery of email and SMS through a durable outbox (being written).
