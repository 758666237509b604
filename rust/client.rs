// SPDX-License-Identifier: GPL-2.0

//! The state of one open `/dev/mdwrite` file and its ioctl dispatch.

use kernel::{prelude::*, uaccess::UserPtr};

use crate::{
    abi::{self, MdwInfo},
    ioctl::Command,
};

/// Feature bits this build of the module implements.
const FEATURES: u64 = 0;

/// One open `/dev/mdwrite` file.
#[pin_data]
pub(crate) struct Client {}

impl Client {
    /// Creates the state of a newly opened file.
    pub(crate) fn new() -> Result<Pin<KBox<Self>>> {
        KBox::pin_init(pin_init!(Self {}), GFP_KERNEL)
    }

    /// Runs one ioctl; returns the ioctl's non-negative result.
    pub(crate) fn ioctl(&self, cmd: u32, arg: UserPtr) -> Result<isize> {
        match Command::decode(cmd, arg)? {
            Command::Info(user) => {
                user.write(&MdwInfo {
                    abi_version: abi::MDW_ABI_VERSION,
                    info_size: size_of::<MdwInfo>() as u32,
                    features: FEATURES,
                })?;
                Ok(0)
            }
        }
    }
}
