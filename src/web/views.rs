//! One askama view struct per page (being written).
