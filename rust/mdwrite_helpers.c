// SPDX-License-Identifier: GPL-2.0
/*
 * The parts of mdwrite that Rust cannot reach in Linux 6.12: struct
 * miscdevice and the file_operations table (no bindings exist for either).
 * Every entry point forwards straight to a Rust function in rust/file.rs.
 */

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>

#include "mdwrite.h"

int mdw_fop_open(struct inode *inode, struct file *file);
int mdw_fop_release(struct inode *inode, struct file *file);
long mdw_fop_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
int mdw_misc_register(void);
void mdw_misc_deregister(void);

/*
 * .owner pins the module while a file is open, so rmmod fails with EBUSY
 * instead of pulling the code out from under an open file.
 */
static const struct file_operations mdw_fops = {
	.owner = THIS_MODULE,
	.open = mdw_fop_open,
	.release = mdw_fop_release,
	.unlocked_ioctl = mdw_fop_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice mdw_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "mdwrite",
	.fops = &mdw_fops,
	.mode = 0600,
};

int mdw_misc_register(void)
{
	return misc_register(&mdw_misc);
}

void mdw_misc_deregister(void)
{
	misc_deregister(&mdw_misc);
}
