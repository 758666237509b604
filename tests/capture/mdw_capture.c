// SPDX-License-Identifier: GPL-2.0
/*
 * Selftest capture NIC: a virtual Ethernet device (rtnl kind "mdw_capture",
 * `ip link add c0 type mdw_capture`) with scatter-gather and checksum
 * offload that reads every packet it is given the way a NIC's DMA would
 * and keeps a copy for the selftests. Not part of mdwrite.
 *
 * Like dummy, and unlike the stack's devices, it leaves the skbs it is
 * given alone (it reads them and frees its reference), so mdwrite recycles
 * its skbs as it does dummy's (mdw_driver_audited()): what dummy cannot
 * show, the recycled packets' bytes on the wire, this device records.
 *
 *   /dev/mdw_capture   each read() returns one frame, oldest first (0 when
 *                      none is left); the checksum of a CHECKSUM_PARTIAL
 *                      packet is filled in, as the hardware would
 *   late_ms            (0644) hold each skb that long before freeing it,
 *                      as a NIC whose TX completion comes late (each skb
 *                      its own time from when it came, in order)
 *   frames, shared,    (0444) frames seen; of them handed over shared (a
 *   violations,        recycled skb); skbs that broke what the device
 *   dropped            announced (fragments without NETIF_F_SG, a
 *                      partial checksum without checksum offload); frames
 *                      not kept (the store was full)
 *   held               (0444) skbs held now (late_ms), not yet freed
 */
#include <linux/etherdevice.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <net/checksum.h>
#include <net/rtnetlink.h>

#define MDWCAP_FRAMES_MAX	8192
#define MDWCAP_FRAME_MAX	9216

static unsigned int late_ms;
module_param(late_ms, uint, 0644);
MODULE_PARM_DESC(late_ms, "hold each skb this long before freeing it");

static unsigned int frames, shared, violations, dropped;
module_param(frames, uint, 0444);
module_param(shared, uint, 0444);
module_param(violations, uint, 0444);
module_param(dropped, uint, 0444);

/*
 * Skbs held for late_ms, each at least until its own time (a hold is
 * never cut short by another's release), freed from the work in the
 * order they came. The skbs may be shared (recycled): nothing is written
 * into them.
 */
struct mdwcap_hold {
	struct list_head node;
	struct sk_buff *skb;
	unsigned long expires;
};

static LIST_HEAD(mdwcap_holds);
static unsigned int mdwcap_nheld;
static DEFINE_SPINLOCK(mdwcap_hold_lock);

static int mdwcap_held_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(mdwcap_nheld));
}

static const struct kernel_param_ops mdwcap_held_ops = {
	.get = mdwcap_held_get,
};
module_param_cb(held, &mdwcap_held_ops, NULL, 0444);
MODULE_PARM_DESC(held, "skbs held now (late_ms), not yet freed");

struct mdwcap_frame {
	struct list_head node;
	unsigned int len;
	u8 data[];
};

static LIST_HEAD(mdwcap_frames);
static unsigned int mdwcap_count;
static DEFINE_SPINLOCK(mdwcap_lock);

static void mdwcap_release(struct work_struct *work);
static DECLARE_DELAYED_WORK(mdwcap_release_work, mdwcap_release);

/*
 * Frees the held skbs whose time has come (@all: every one), oldest
 * first, stopping at the first still held; returns the jiffies until
 * that one's time, 0 when none is left.
 */
static unsigned long mdwcap_release_due(bool all)
{
	struct mdwcap_hold *h, *next;
	unsigned long wait = 0;
	LIST_HEAD(due);

	spin_lock_bh(&mdwcap_hold_lock);
	list_for_each_entry_safe(h, next, &mdwcap_holds, node) {
		if (!all && time_before(jiffies, h->expires)) {
			wait = max(h->expires - jiffies, 1UL);
			break;
		}
		list_move_tail(&h->node, &due);
		WRITE_ONCE(mdwcap_nheld, mdwcap_nheld - 1);
	}
	spin_unlock_bh(&mdwcap_hold_lock);
	list_for_each_entry_safe(h, next, &due, node) {
		dev_consume_skb_any(h->skb);
		kfree(h);
	}
	return wait;
}

static void mdwcap_release(struct work_struct *work)
{
	unsigned long wait = mdwcap_release_due(false);

	if (wait)
		schedule_delayed_work(&mdwcap_release_work, wait);
}

/* A copy of @skb's frame, its partial checksum completed. */
static struct mdwcap_frame *mdwcap_copy(struct sk_buff *skb)
{
	struct mdwcap_frame *f;
	unsigned int len = skb->len;

	if (len > MDWCAP_FRAME_MAX)
		return NULL;
	f = kmalloc(struct_size(f, data, len), GFP_ATOMIC);
	if (!f)
		return NULL;
	f->len = len;
	if (skb_copy_bits(skb, 0, f->data, len)) {
		kfree(f);
		return NULL;
	}
	if (skb->ip_summed == CHECKSUM_PARTIAL) {
		unsigned int start = skb_checksum_start_offset(skb);
		unsigned int at = start + skb->csum_offset;
		__sum16 sum;

		if (start >= len || at + 2 > len) {
			kfree(f);
			return NULL;
		}
		sum = csum_fold(csum_partial(f->data + start, len - start, 0));
		memcpy(f->data + at, &sum, 2);
	}
	return f;
}

static netdev_tx_t mdwcap_xmit(struct sk_buff *skb, struct net_device *dev)
{
	netdev_features_t features = dev->features;
	struct mdwcap_hold *h;
	struct mdwcap_frame *f;
	unsigned int late;

	if ((skb_shinfo(skb)->nr_frags && !(features & NETIF_F_SG)) ||
	    (skb->ip_summed == CHECKSUM_PARTIAL &&
	     !(features & NETIF_F_CSUM_MASK)))
		WRITE_ONCE(violations, violations + 1);
	if (skb_shared(skb))
		WRITE_ONCE(shared, shared + 1);
	f = mdwcap_copy(skb);
	spin_lock_bh(&mdwcap_lock);
	WRITE_ONCE(frames, frames + 1);
	if (f && mdwcap_count < MDWCAP_FRAMES_MAX) {
		list_add_tail(&f->node, &mdwcap_frames);
		mdwcap_count++;
		f = NULL;
	} else {
		WRITE_ONCE(dropped, dropped + 1);
	}
	spin_unlock_bh(&mdwcap_lock);
	kfree(f);
	dev_sw_netstats_tx_add(dev, 1, skb->len);
	late = READ_ONCE(late_ms);
	h = late ? kmalloc(sizeof(*h), GFP_ATOMIC) : NULL;
	if (h) {
		h->skb = skb;
		h->expires = jiffies + msecs_to_jiffies(late);
		spin_lock_bh(&mdwcap_hold_lock);
		list_add_tail(&h->node, &mdwcap_holds);
		WRITE_ONCE(mdwcap_nheld, mdwcap_nheld + 1);
		spin_unlock_bh(&mdwcap_hold_lock);
		/* A release already due earlier reschedules for this one. */
		schedule_delayed_work(&mdwcap_release_work,
				      msecs_to_jiffies(late));
	} else {
		dev_consume_skb_any(skb);
	}
	return NETDEV_TX_OK;
}

static const struct net_device_ops mdwcap_netdev_ops = {
	.ndo_start_xmit = mdwcap_xmit,
	.ndo_validate_addr = eth_validate_addr,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_get_stats64 = dev_get_tstats64,
};

static void mdwcap_setup(struct net_device *dev)
{
	ether_setup(dev);
	dev->netdev_ops = &mdwcap_netdev_ops;
	dev->needs_free_netdev = true;
	dev->pcpu_stat_type = NETDEV_PCPU_STAT_TSTATS;
	dev->flags |= IFF_NOARP;
	dev->flags &= ~IFF_MULTICAST;
	dev->priv_flags |= IFF_LIVE_ADDR_CHANGE | IFF_NO_QUEUE;
	dev->features |= NETIF_F_SG | NETIF_F_HW_CSUM;
	dev->hw_features |= NETIF_F_SG | NETIF_F_HW_CSUM;
	dev->min_mtu = 68;
	dev->max_mtu = MDWCAP_FRAME_MAX - ETH_HLEN;
	eth_hw_addr_random(dev);
}

static struct rtnl_link_ops mdwcap_link_ops __read_mostly = {
	.kind = "mdw_capture",
	.setup = mdwcap_setup,
};

static ssize_t mdwcap_read(struct file *file, char __user *buf, size_t count,
			loff_t *ppos)
{
	struct mdwcap_frame *f;
	ssize_t ret;

	spin_lock_bh(&mdwcap_lock);
	f = list_first_entry_or_null(&mdwcap_frames, struct mdwcap_frame, node);
	if (f) {
		list_del(&f->node);
		mdwcap_count--;
	}
	spin_unlock_bh(&mdwcap_lock);
	if (!f)
		return 0;
	ret = f->len > count ? -EMSGSIZE : f->len;
	if (ret > 0 && copy_to_user(buf, f->data, f->len))
		ret = -EFAULT;
	kfree(f);
	return ret;
}

static const struct file_operations mdwcap_fops = {
	.owner = THIS_MODULE,
	.read = mdwcap_read,
};

static struct miscdevice mdwcap_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "mdw_capture",
	.fops = &mdwcap_fops,
};

static void mdwcap_clear(void)
{
	struct mdwcap_frame *f, *next;

	list_for_each_entry_safe(f, next, &mdwcap_frames, node)
		kfree(f);
	INIT_LIST_HEAD(&mdwcap_frames);
	mdwcap_count = 0;
}

static int __init mdwcap_init(void)
{
	int err;

	err = misc_register(&mdwcap_misc);
	if (err)
		return err;
	err = rtnl_link_register(&mdwcap_link_ops);
	if (err)
		misc_deregister(&mdwcap_misc);
	return err;
}

static void __exit mdwcap_exit(void)
{
	rtnl_link_unregister(&mdwcap_link_ops);
	cancel_delayed_work_sync(&mdwcap_release_work);
	mdwcap_release_due(true);
	misc_deregister(&mdwcap_misc);
	mdwcap_clear();
}

module_init(mdwcap_init);
module_exit(mdwcap_exit);
MODULE_DESCRIPTION("mdwrite selftest capture NIC");
MODULE_LICENSE("GPL");
MODULE_ALIAS_RTNL_LINK("mdw_capture");
