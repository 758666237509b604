// SPDX-License-Identifier: GPL-2.0

//! GStreamer plugin `mdwrite`: the element `mdwritesink`, a drop-in for
//! `multiudpsink` that sends every buffer to every client in one call
//! through the mdwrite module, or its userspace fallback.
//!
//! See Documentation/gstreamer.rst.

use gst::glib;

pub mod clients;
mod sink;

pub use descriptor::plugin_register_static;
pub use sink::MdwriteSink;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    sink::register(plugin)
}

/// The plugin's descriptor and the entry points GStreamer looks up
/// (`gst_plugin_mdwrite_get_desc`), as `gst::plugin_define!` makes them.
#[allow(missing_docs)]
pub mod descriptor {
    use super::plugin_init;

    gst::plugin_define!(
        mdwrite,
        env!("CARGO_PKG_DESCRIPTION"),
        plugin_init,
        env!("CARGO_PKG_VERSION"),
        "GPL",
        "mdwrite",
        "mdwrite",
        "https://example.invalid/mdwrite"
    );
}
