// SPDX-License-Identifier: GPL-2.0

//! Compiles a C probe against `uapi/mdwrite.h` and checks that the Rust
//! mirror has the same sizes, field offsets and ioctl numbers.

use std::{collections::BTreeMap, mem::offset_of, path::PathBuf, process::Command};

use mdwrite_uapi::*;

/// One fact about the ABI: a name and its value on the Rust side.
type Facts = BTreeMap<String, u64>;

macro_rules! facts {
    ($facts:ident; $(struct $c:literal = $rs:ident { $($f:ident),* $(,)? })* ; const $($name:ident),* $(,)?) => {{
        let mut c = String::new();
        $(
            $facts.insert(format!("sizeof {}", $c), std::mem::size_of::<$rs>() as u64);
            c += &format!("P(\"sizeof {0}\", sizeof(struct {0}));\n", $c);
            $(
                $facts.insert(format!("offsetof {}.{}", $c, stringify!($f)), offset_of!($rs, $f) as u64);
                c += &format!("P(\"offsetof {0}.{1}\", offsetof(struct {0}, {1}));\n", $c, stringify!($f));
            )*
        )*
        $(
            $facts.insert(stringify!($name).to_string(), $name as u64);
            c += &format!("P(\"{0}\", {0});\n", stringify!($name));
        )*
        c
    }};
}

fn probe_source(body: &str) -> String {
    format!(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"mdwrite.h\"\n\
         #define P(n, v) printf(\"%s=%llu\\n\", n, (unsigned long long)(v))\n\
         int main(void) {{\n{body}return 0;\n}}\n"
    )
}

#[test]
fn rust_mirror_matches_c_header() {
    let mut rust = Facts::new();
    let body = facts!(rust;
        struct "mdw_info" = MdwInfo { abi_version, info_size, features };
        const MDW_ABI_VERSION, MDW_IOC_MAGIC, MDW_IOC_INFO,
    );

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join("abi_probe.c");
    let bin = dir.join("abi_probe");
    std::fs::write(&src, probe_source(&body)).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(root.join("uapi"))
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "C probe failed to compile");
    let out = Command::new(&bin).output().expect("run the C probe");
    assert!(out.status.success());

    let c: Facts = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(
        c.len(),
        rust.len(),
        "probe printed a different set of facts"
    );
    for (name, value) in &rust {
        assert_eq!(
            c.get(name),
            Some(value),
            "{name}: C says {:?}, Rust says {value}",
            c.get(name)
        );
    }
}
