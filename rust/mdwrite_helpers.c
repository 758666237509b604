// SPDX-License-Identifier: GPL-2.0
/*
 * The parts of mdwrite that Rust cannot reach in Linux 6.12: struct
 * miscdevice and the file_operations table (no bindings exist for either),
 * and the static inlines of poll and eventfd. Every entry point forwards
 * straight to a Rust function in rust/file.rs.
 */

#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/poll.h>

#include "mdwrite.h"

int mdw_fop_open(struct inode *inode, struct file *file);
int mdw_fop_release(struct inode *inode, struct file *file);
long mdw_fop_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
ssize_t mdw_fop_read(struct file *file, char __user *buf, size_t count,
		     loff_t *ppos);
__poll_t mdw_fop_poll(struct file *file, struct poll_table_struct *pt);
int mdw_misc_register(void);
void mdw_misc_deregister(void);
void mdw_waitqueue_init(wait_queue_head_t *wq);
void mdw_poll_wait(struct file *file, wait_queue_head_t *wq,
		   struct poll_table_struct *pt);
struct eventfd_ctx *mdw_eventfd_get(int fd);
void mdw_eventfd_signal(struct eventfd_ctx *ctx);
void mdw_eventfd_put(struct eventfd_ctx *ctx);

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
	.read = mdw_fop_read,
	.poll = mdw_fop_poll,
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

/* --- poll and eventfd: static inlines ----------------------------------------- */

void mdw_waitqueue_init(wait_queue_head_t *wq)
{
	init_waitqueue_head(wq);
}

void mdw_poll_wait(struct file *file, wait_queue_head_t *wq,
		   struct poll_table_struct *pt)
{
	poll_wait(file, wq, pt);
}

/* The eventfd behind @fd, referenced; ERR_PTR(-EBADF/-EINVAL) otherwise. */
struct eventfd_ctx *mdw_eventfd_get(int fd)
{
	return eventfd_ctx_fdget(fd);
}

void mdw_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx);
}

void mdw_eventfd_put(struct eventfd_ctx *ctx)
{
	eventfd_ctx_put(ctx);
}

/*
 * The modinfo fields the module! macro of 6.12 has no key for (it takes name,
 * author, description, license and alias): the release (the version of the
 * mdwrite-dkms package and of the userspace workspace) and the ABI version
 * MDW_IOC_INFO reports.
 */
MODULE_VERSION("0.1.0");
MODULE_INFO(abi_version, __stringify(MDW_ABI_VERSION));
