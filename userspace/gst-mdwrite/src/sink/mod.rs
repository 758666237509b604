// SPDX-License-Identifier: GPL-2.0

//! The element `mdwritesink`.

use gst::{glib, prelude::*};

mod imp;

glib::wrapper! {
    /// `mdwritesink`: sends every buffer to every client, one call per
    /// interval, through the mdwrite module or its fallback.
    pub struct MdwriteSink(ObjectSubclass<imp::MdwriteSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// Which mdwrite backend the element sends through (property `backend`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstMdwriteBackend")]
pub enum BackendChoice {
    /// The module if /dev/mdwrite opens, else the fallback.
    #[default]
    #[enum_value(
        name = "Auto: the module if /dev/mdwrite opens, else the fallback",
        nick = "auto"
    )]
    Auto = 0,
    /// The module; the element fails to start without it.
    #[enum_value(name = "Module: /dev/mdwrite, fail without it", nick = "module")]
    Module = 1,
    /// The userspace fallback (sendmmsg).
    #[enum_value(name = "Fallback: UDP sockets and sendmmsg", nick = "fallback")]
    Fallback = 2,
}

/// Registers `mdwritesink` with `plugin`.
pub(crate) fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "mdwritesink",
        gst::Rank::NONE,
        MdwriteSink::static_type(),
    )
}
