/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * mdwrite: multi-destination zero-copy UDP write through /dev/mdwrite.
 *
 * This header is the one definition of the mdwrite ABI. The Rust mirror in
 * uapi/mdwrite.rs is checked against it field by field by a test that
 * compiles a C probe of this file (userspace/mdwrite-uapi/tests/abi_probe.rs).
 *
 * Conventions:
 *  - Only fixed-width types, explicit padding, user pointers as __u64.
 *  - Every ioctl argument is a struct whose size is encoded in the ioctl
 *    number (_IOC_SIZE). The module dispatches on type, number and
 *    direction only and treats _IOC_SIZE as the caller's struct size, so a
 *    struct can grow at its end without a new ioctl number:
 *      - output: the module writes min(caller size, module size) bytes;
 *      - input: bytes the module does not know must be zero (else E2BIG),
 *        fields the caller does not know read as zero.
 *    A size smaller than the first published version of the struct is
 *    rejected with ENOTTY, as is any unknown type, number or direction.
 *
 * See Documentation/uapi.rst for every ioctl, field and errno.
 */
#ifndef _UAPI_LINUX_MDWRITE_H
#define _UAPI_LINUX_MDWRITE_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Version of this ABI; raised on incompatible changes only. */
#define MDW_ABI_VERSION 1

/* ioctl type byte (free in Documentation/userspace-api/ioctl/ioctl-number.rst). */
#define MDW_IOC_MAGIC 0xB9

/* Feature bits reported in mdw_info.features. None are defined yet. */

/**
 * struct mdw_info - what the loaded module implements (MDW_IOC_INFO)
 * @abi_version: MDW_ABI_VERSION of the module
 * @info_size: sizeof(struct mdw_info) as the module knows it; a caller with
 *	a smaller struct learns that the module has more to say
 * @features: MDW_FEAT_* bits the module supports
 */
struct mdw_info {
	__u32 abi_version;
	__u32 info_size;
	__u64 features;
};

#define MDW_IOC_INFO _IOR(MDW_IOC_MAGIC, 0x00, struct mdw_info)

#endif /* _UAPI_LINUX_MDWRITE_H */
