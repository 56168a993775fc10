//! The deterministic fake flash.
