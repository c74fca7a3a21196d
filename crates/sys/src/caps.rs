//! Capability sets (through the `caps` crate).

pub use caps::Capability;

/// The capabilities of `wanted` that this thread's bounding set still has.
pub fn in_bounding_set(wanted: &[Capability]) -> Vec<Capability> {
    wanted
        .iter()
        .copied()
        .filter(|c| caps::has_cap(None, caps::CapSet::Bounding, *c).unwrap_or(false))
        .collect()
}
