// SPDX-License-Identifier: GPL-2.0

//! Destination groups (`MDW_IOC_GROUP_SET`): named lists of a file's
//! destination handles, to which one entry (`MDW_ENTRY_GROUP`) sends its
//! data, a fan-out described once.

use kernel::{alloc::KVVec, prelude::*};

use crate::{
    abi::{MdwGroup, MDW_MAX_GROUPS, MDW_MAX_GROUP_DESTS},
    dest::DestTable,
    ioctl::read_array_into,
    table::Table,
};

/// One group: destination handles, in the order its fan-outs send to them.
pub(crate) struct Group {
    dests: KVVec<u32>,
}

/// A file's groups, by handle.
pub(crate) type GroupTable = Table<Group, { MDW_MAX_GROUPS as usize }>;

impl Group {
    /// The group `req` describes, its handles read from user memory (no
    /// lock held): `EINVAL` for flags or reserved bits, or no destination;
    /// `E2BIG` for more than `MDW_MAX_GROUP_DESTS`.
    pub(crate) fn read(req: &MdwGroup) -> Result<Self> {
        if req.flags != 0 || req.reserved != 0 || req.count == 0 {
            return Err(EINVAL);
        }
        if req.count > MDW_MAX_GROUP_DESTS {
            return Err(E2BIG);
        }
        let mut dests = KVVec::new();
        read_array_into(&mut dests, req.dests, req.count as usize, size_of::<u32>())?;
        Ok(Self { dests })
    }

    /// `ENXIO` unless every handle names a destination of `table`.
    pub(crate) fn check(&self, table: &DestTable) -> Result {
        match self.dests.iter().all(|&d| table.get(d).is_some()) {
            true => Ok(()),
            false => Err(ENXIO),
        }
    }

    /// Its destination handles, in order; never empty.
    pub(crate) fn dests(&self) -> &[u32] {
        &self.dests
    }
}
