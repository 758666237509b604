// SPDX-License-Identifier: GPL-2.0
/*
 * Networking helpers of mdwrite: the static inlines and macros of the
 * network stack that Rust cannot call in Linux 6.12 (device references
 * with trackers, neighbour lookup, skb construction, direct transmit under
 * the TX lock, and the zero-copy completion object). Each function does one
 * thing; all policy lives in the Rust callers (rust/net.rs, rust/skb.rs,
 * rust/done.rs).
 */

#include <linux/capability.h>
#include <linux/completion.h>
#include <linux/etherdevice.h>
#include <linux/fs.h>
#include <linux/delay.h>
#include <linux/highmem.h>
#include <linux/if_arp.h>
#include <linux/netdevice.h>
#include <linux/nsproxy.h>
#include <linux/sched/signal.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <net/arp.h>
#include <net/checksum.h>
#include <net/ip.h>
#include <net/addrconf.h>
#include <net/ipv6_stubs.h>
#include <net/ndisc.h>
#include <net/net_namespace.h>

#include "mdwrite_net.h"

/* --- network namespace --------------------------------------------------- */

struct net *mdw_net_get_current(void)
{
	return get_net(current->nsproxy->net_ns);
}

void mdw_net_put(struct net *net)
{
	put_net(net);
}

/*
 * Whether the opener of @file had CAP_NET_RAW over @net: the file's
 * credentials (f_cred), as for a socket. struct net's layout is not in
 * Rust's bindings.
 */
bool mdw_file_capable_raw(const struct file *file, struct net *net)
{
	return file_ns_capable(file, net->user_ns, CAP_NET_RAW);
}

/* --- devices --------------------------------------------------------------- */

struct mdw_dev {
	struct net_device *dev;
	netdevice_tracker tracker;
};

/*
 * Holds device @ifindex of @net in @d, which holds none: -ENODEV when
 * there is no such device (@d still holds none).
 */
int mdw_dev_hold(struct mdw_dev *d, struct net *net, int ifindex)
{
	d->dev = netdev_get_by_index(net, ifindex, &d->tracker, GFP_KERNEL);
	return d->dev ? 0 : -ENODEV;
}

/* Lets go of @d's device; @d may hold another (mdw_dev_hold()). */
void mdw_dev_unhold(struct mdw_dev *d)
{
	netdev_put(d->dev, &d->tracker);
	d->dev = NULL;
}

struct mdw_dev *mdw_dev_get(struct net *net, int ifindex)
{
	struct mdw_dev *d = kmalloc(sizeof(*d), GFP_KERNEL_ACCOUNT);

	if (!d)
		return ERR_PTR(-ENOMEM);
	if (mdw_dev_hold(d, net, ifindex)) {
		kfree(d);
		return ERR_PTR(-ENODEV);
	}
	return d;
}

/* Lets go of @d's device, if it holds one, and frees @d. */
void mdw_dev_put(struct mdw_dev *d)
{
	if (d->dev)
		mdw_dev_unhold(d);
	kfree(d);
}

/*
 * Drivers audited to leave a shared skb alone (Documentation/design.rst,
 * "Which devices recycle"): they neither write the skb's head or data
 * nor clone, expand, linearize or pad it. IFF_TX_SKB_SHARING proves
 * nothing (ether_setup() sets it on every Ethernet device). mdw_capture
 * is the selftests' capture NIC (tests/capture/mdw_capture.c), which only
 * reads the packets it is given.
 */
static bool mdw_driver_audited(const struct net_device *dev)
{
	const struct device *parent = dev->dev.parent;
	const struct rtnl_link_ops *ops = dev->rtnl_link_ops;

	if (ops && (!strcmp(ops->kind, "dummy") ||
		    !strcmp(ops->kind, "mdw_capture")))
		return true;
	return parent && parent->driver &&
	       !strcmp(parent->driver->name, "virtio_net");
}

void mdw_dev_info(const struct mdw_dev *d, struct mdw_dev_info *info)
{
	const struct net_device *dev = d->dev;

	info->features = dev->features;
	info->vlan_features = dev->vlan_features;
	info->ifindex = dev->ifindex;
	info->mtu = dev->mtu;
	info->ethernet = dev->type == ARPHRD_ETHER && dev->addr_len == ETH_ALEN;
	info->up = netif_running(dev) && netif_carrier_ok(dev);
	info->vlan_challenged = !!(dev->features & NETIF_F_VLAN_CHALLENGED);
	info->recycle_ok = mdw_driver_audited(dev) && !dev->needed_tailroom;
	memcpy(info->mac, dev->dev_addr, ETH_ALEN);
}

/*
 * Device events: every netdevice notifier event of any device (a change of
 * state, features, MTU or address, a device going away or coming) moves
 * the counter on. A file that read a device's state (mdw_dev_info()) when
 * the counter was at some value knows it unchanged while the counter
 * stays there, but for the carrier, which a notifier reports late (link
 * watch): mdw_dev_up() reads that each time.
 */
static atomic64_t mdw_dev_event_count = ATOMIC64_INIT(1);

static int mdw_dev_event(struct notifier_block *nb, unsigned long event,
			 void *ptr)
{
	atomic64_inc(&mdw_dev_event_count);
	return NOTIFY_DONE;
}

static struct notifier_block mdw_dev_notifier = {
	.notifier_call = mdw_dev_event,
};

int mdw_dev_events_init(void)
{
	return register_netdevice_notifier(&mdw_dev_notifier);
}

void mdw_dev_events_exit(void)
{
	unregister_netdevice_notifier(&mdw_dev_notifier);
}

/*
 * The event count now; a device's state read after this call is at least
 * as new as the count (the notifier runs after the change it reports).
 */
u64 mdw_dev_events(void)
{
	u64 now = atomic64_read(&mdw_dev_event_count);

	smp_rmb();
	return now;
}

/* Whether @d's device is running with a carrier (mdw_dev_info()'s up). */
bool mdw_dev_up(const struct mdw_dev *d)
{
	return netif_running(d->dev) && netif_carrier_ok(d->dev);
}

/* Packet taps (tcpdump, AF_PACKET) on @d or on every device. */
bool mdw_dev_nit_active(const struct mdw_dev *d)
{
	return dev_nit_active(d->dev);
}

static bool mdw_layout_ok(const struct mdw_layout *l)
{
	return l->hdr_len <= MDW_MAX_HEADER && l->l4_off < l->hdr_len &&
	       l->l3_off < l->l4_off;
}

/*
 * The metadata of a packet of layout @l whose Ethernet header is at
 * skb->data, as the stack would set it: protocol (ETH_P_8021Q for a tagged
 * frame, so drivers and taps parse it), header offsets and mac_len.
 */
static void mdw_skb_set_shape(struct sk_buff *skb, struct net_device *dev,
			      const struct mdw_layout *l)
{
	skb_set_network_header(skb, l->l3_off);
	skb_set_transport_header(skb, l->l4_off);
	skb->mac_len = l->l3_off;
	if (l->vlan)
		skb->protocol = htons(ETH_P_8021Q);
	else
		skb->protocol = l->ipv6 ? htons(ETH_P_IPV6) : htons(ETH_P_IP);
	skb->dev = dev;
}

/* The checksum fields of a packet skb of layout @l. */
static void mdw_skb_set_csum(struct sk_buff *skb, const struct mdw_layout *l)
{
	if (l->csum_partial) {
		skb->ip_summed = CHECKSUM_PARTIAL;
		skb->csum_start = skb_transport_header(skb) - skb->head;
		skb->csum_offset = offsetof(struct udphdr, check);
	} else {
		skb->ip_summed = CHECKSUM_NONE;
	}
}

/*
 * What @d does with packets of layout @l and header @hdr: the features
 * netif_skb_features() gives a checksum-offloaded packet of that shape
 * (it folds in vlan_features, ndo_features_check and whether the device
 * can checksum the protocol), the answer the core's validate_xmit_skb()
 * would act on. The direct path skips that function, so mdwrite follows
 * the answer itself: no fragments without NETIF_F_SG, no
 * CHECKSUM_PARTIAL without a checksum feature.
 */
int mdw_dev_probe(const struct mdw_dev *d, const struct mdw_layout *l,
		  const u8 *hdr, struct mdw_dev_caps *caps)
{
	struct mdw_layout partial = *l;
	netdev_features_t f;
	struct sk_buff *skb;

	if (!mdw_layout_ok(l))
		return -EINVAL;
	skb = alloc_skb(MDW_MAX_HEADER, GFP_KERNEL_ACCOUNT);
	if (!skb)
		return -ENOMEM;
	skb_reset_mac_header(skb);
	skb_put_data(skb, hdr, l->hdr_len);
	mdw_skb_set_shape(skb, d->dev, l);
	partial.csum_partial = true;
	mdw_skb_set_csum(skb, &partial);
	f = netif_skb_features(skb);
	consume_skb(skb);
	caps->sg = !!(f & NETIF_F_SG);
	caps->csum = !!(f & NETIF_F_CSUM_MASK);
	return 0;
}

/*
 * The next hop's MAC for @daddr (4 or 16 bytes) on @d: multicast maps
 * directly; unicast needs a valid neighbour entry. When there is none,
 * resolution is started and -EHOSTUNREACH returned, so a retry can succeed.
 */
int mdw_neigh_resolve(const struct mdw_dev *d, bool ipv6, const u8 *daddr,
		      u8 *mac)
{
	struct neigh_table *tbl = ipv6 ? ipv6_stub->nd_tbl : &arp_tbl;
	struct neighbour *n;
	int err = -EHOSTUNREACH;

	if (!ipv6 && ipv4_is_multicast(*(const __be32 *)daddr)) {
		ip_eth_mc_map(*(const __be32 *)daddr, mac);
		return 0;
	}
	if (ipv6 && ipv6_addr_is_multicast((const struct in6_addr *)daddr)) {
		ipv6_eth_mc_map((const struct in6_addr *)daddr, mac);
		return 0;
	}
	if (!tbl)
		return -EAFNOSUPPORT;

	n = neigh_lookup(tbl, daddr, d->dev);
	if (!n) {
		n = neigh_create(tbl, daddr, d->dev);
		if (IS_ERR(n))
			return PTR_ERR(n);
	}
	if (READ_ONCE(n->nud_state) & NUD_VALID) {
		neigh_ha_snapshot(mac, n, d->dev);
		err = 0;
	} else {
		neigh_event_send(n, NULL);
	}
	neigh_release(n);
	return err;
}

/* --- the call's completion --------------------------------------------------- */

/*
 * One per MDW_IOC_WRITEV call. Every skb of the call that refers to its
 * pages (and every linear copy of a paced call) holds a reference on
 * @ubuf; the call holds one more until it has queued its last packet. The
 * device releasing the last skb (or the call, if it sent nothing) drops the
 * last reference: one completion per call.
 *
 * A synchronous call waits for @done. An asynchronous one has handed its
 * state to @call (mdw_done_finish_async()); the last reference then queues
 * @work, which runs the Rust completion (mdw_async_complete(): unpin,
 * uncharge, queue the completion record, wake the file's readers) in
 * process context, whatever context the device freed the skb in.
 */
struct mdw_done {
	struct ubuf_info ubuf;
	struct completion done;
	struct work_struct work;
	void *call;
	/* A synchronous call: @call is its release, run only if abandoned. */
	bool sync;
	/* MDW_WAITING -> MDW_DONE (completion first) or MDW_ABANDONED. */
	atomic_t state;
};

enum { MDW_WAITING, MDW_DONE, MDW_ABANDONED };

/* Asynchronous calls whose completion has not run yet, of every file. */
static atomic_t mdw_async_calls = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(mdw_async_idle);
static struct workqueue_struct *mdw_async_wq;

/*
 * One of what module unload waits for (an asynchronous or abandoned call,
 * a file's keep) is gone; wakes the unload when it was the last.
 */
static void mdw_async_put(void)
{
	if (atomic_dec_and_test(&mdw_async_calls))
		wake_up(&mdw_async_idle);
}

static void mdw_done_complete(struct sk_buff *skb, struct ubuf_info *uarg,
			      bool zerocopy_success)
{
	struct mdw_done *d = container_of(uarg, struct mdw_done, ubuf);

	if (!refcount_dec_and_test(&uarg->refcnt))
		return;
	/*
	 * An asynchronous call, or a synchronous one whose caller was killed
	 * while waiting (mdw_done_wait_killable()), is released from the
	 * workqueue; otherwise its waiter is woken.
	 */
	if (!d->sync || atomic_cmpxchg(&d->state, MDW_WAITING, MDW_DONE) ==
				MDW_ABANDONED)
		queue_work(mdw_async_wq, &d->work);
	else
		complete(&d->done);
}

static const struct ubuf_info_ops mdw_done_ops = {
	.complete = mdw_done_complete,
};

static void mdw_done_work(struct work_struct *work)
{
	struct mdw_done *d = container_of(work, struct mdw_done, work);

	if (d->sync)
		mdw_call_release(d->call);
	else
		mdw_async_complete(d->call);
	kfree(d);
	mdw_async_put();
}

/* A completion holding only the call's reference, nothing in flight. */
static void mdw_done_init(struct mdw_done *d)
{
	d->ubuf.ops = &mdw_done_ops;
	/*
	 * Like MSG_ZEROCOPY, and unlike io_uring, no SKBFL_DONT_ORPHAN: a clone
	 * (packet taps, bridge flooding) or a crossing into another device's
	 * receive path (veth) copies the payload and drops its reference, so a
	 * slow reader elsewhere can never hold the call's pages.
	 */
	d->ubuf.flags = SKBFL_ZEROCOPY_FRAG;
	refcount_set(&d->ubuf.refcnt, 1);
	init_completion(&d->done);
	INIT_WORK(&d->work, mdw_done_work);
	d->call = NULL;
	d->sync = true;
	atomic_set(&d->state, MDW_WAITING);
}

struct mdw_done *mdw_done_new(void)
{
	struct mdw_done *d = kmalloc(sizeof(*d), GFP_KERNEL_ACCOUNT);

	if (d)
		mdw_done_init(d);
	return d;
}

/*
 * Drops the call's reference, waits for every skb to be released, frees.
 * Only for calls with nothing in flight that can be held up (nothing
 * sent, or every skb already released): the wait is not killable.
 */
void mdw_done_wait_free(struct mdw_done *d)
{
	mdw_done_complete(NULL, &d->ubuf, true);
	wait_for_completion(&d->done);
	kfree(d);
}

/*
 * A synchronous call's end: drops the call's reference and waits, killably,
 * until the device has released every skb (at once when it has already:
 * the reference is kept then). Returns 0 then: the caller
 * still owns @release, and @d, made new (mdw_done_new()) for the file's
 * next call: nothing refers to it any more (every skb that held it has
 * dropped its reference, and complete() touches nothing once the wait has
 * returned, as a kfree() here would rely on too). On a fatal signal
 * returns -EINTR at once and @d and @release belong to the deferred
 * release: mdw_call_release(@release) runs from the workqueue once the
 * last skb is released (module unload waits for it like for an
 * asynchronous call), and @d is freed after it.
 */
int mdw_done_wait_killable(struct mdw_done *d, void *release)
{
	/*
	 * The usual end on a driver that frees what it sent before the flush
	 * returns: only the call's reference is left, and nothing can take
	 * one any more (every skb of the call was made), so @d is as new.
	 */
	if (refcount_read(&d->ubuf.refcnt) == 1) {
		/* Pairs with the release in the last skb's mdw_done_complete(). */
		smp_acquire__after_ctrl_dep();
		return 0;
	}
	d->call = release;
	mdw_done_complete(NULL, &d->ubuf, true);
	if (!wait_for_completion_killable(&d->done)) {
		mdw_done_init(d);
		return 0;
	}
	atomic_inc(&mdw_async_calls);
	if (atomic_cmpxchg(&d->state, MDW_WAITING, MDW_ABANDONED) == MDW_WAITING)
		return -EINTR;
	/* Completed meanwhile: complete() has been or is being called. */
	mdw_async_put();
	wait_for_completion(&d->done);
	mdw_done_init(d);
	return 0;
}

/*
 * Hands the asynchronous call's state @call to @d and drops the call's
 * reference: mdw_async_complete(@call) runs once the device has released
 * every skb, perhaps before this returns. @d is freed after it.
 */
void mdw_done_finish_async(struct mdw_done *d, void *call)
{
	atomic_inc(&mdw_async_calls);
	d->call = call;
	d->sync = false;
	mdw_done_complete(NULL, &d->ubuf, true);
}

/*
 * A file's keep: what the skbs its destinations' rings hold stay tied to
 * between calls, so that a call neither ties them to itself nor unties
 * them (Documentation/design.rst, "Recycled skbs"). Each skb tied to it
 * holds a reference, and the file one more. The rings only keep skbs the
 * device has let go of: one still held at the end of a call, or replaced
 * while held, is tied to the call's completion instead before the ring
 * lets go of it (mdw_skb_let_go()), so a call never completes while the
 * device holds one of its packets and no skb tied to a keep outlives its
 * file in a device. Module unload waits for the last keep like for an
 * asynchronous call.
 */
static void mdw_keep_complete(struct sk_buff *skb, struct ubuf_info *uarg,
			      bool zerocopy_success)
{
	if (!refcount_dec_and_test(&uarg->refcnt))
		return;
	kfree(uarg);
	mdw_async_put();
}

static const struct ubuf_info_ops mdw_keep_ops = {
	.complete = mdw_keep_complete,
};

struct ubuf_info *mdw_keep_new(void)
{
	struct ubuf_info *k = kmalloc(sizeof(*k), GFP_KERNEL_ACCOUNT);

	if (!k)
		return NULL;
	k->ops = &mdw_keep_ops;
	/* As a call's completion (mdw_done_init()): no SKBFL_DONT_ORPHAN. */
	k->flags = SKBFL_ZEROCOPY_FRAG;
	refcount_set(&k->refcnt, 1);
	atomic_inc(&mdw_async_calls);
	return k;
}

/* Drops the file's reference to @k. */
void mdw_keep_put(struct ubuf_info *k)
{
	mdw_keep_complete(NULL, k, true);
}

int mdw_async_init(void)
{
	mdw_async_wq = alloc_workqueue("mdwrite", WQ_UNBOUND, 0);
	return mdw_async_wq ? 0 : -ENOMEM;
}

/*
 * Module unload: every file is closed, but their asynchronous calls may
 * still be in flight; wait for the devices to release them, then for the
 * last completion work to return.
 */
void mdw_async_exit(void)
{
	wait_event(mdw_async_idle, !atomic_read(&mdw_async_calls));
	destroy_workqueue(mdw_async_wq);
}

/* --- RLIMIT_MEMLOCK ------------------------------------------------------------ */

/*
 * Charges @bytes of pinned memory to the caller's RLIMIT_MEMLOCK exactly as
 * MSG_ZEROCOPY does. ERR_PTR(-ENOBUFS) over the limit; NULL when nothing
 * was charged (CAP_IPC_LOCK, or no bytes), so that such a call allocates
 * nothing for its charge.
 */
struct mmpin *mdw_memlock_charge(u64 bytes)
{
	struct mmpin charged = {}, *m;
	int err;

	err = mm_account_pinned_pages(&charged, bytes);
	if (err)
		return ERR_PTR(err);
	if (!charged.user)
		return NULL;
	m = kmemdup(&charged, sizeof(charged), GFP_KERNEL_ACCOUNT);
	if (!m) {
		mm_unaccount_pinned_pages(&charged);
		return ERR_PTR(-ENOMEM);
	}
	return m;
}

/* Returns the charge; any context. */
void mdw_memlock_uncharge(struct mmpin *m)
{
	mm_unaccount_pinned_pages(m);
	kfree(m);
}

/* --- skbs ------------------------------------------------------------------ */

/*
 * Packets are header-only skbs: the header in the linear part, written by
 * Rust in place (the pointer returned through @hdr), the payload attached
 * by reference as @nfrags page fragments of pinned user pages (no page
 * references taken: SKBFL_MANAGED_FRAG_REFS, the call's pin outlives the
 * skb through @done).
 *
 * Recycling (rust/skb.rs SkbRing): on a device that may be handed a shared
 * skb (IFF_TX_SKB_SHARING, as pktgen requires for its bursts; such a driver
 * does not modify the skb) and for direct sends, each destination of a call
 * keeps a reference to the skbs it sent, and one the device has released is
 * rearmed for the destination's next packet: its header, written for an
 * earlier packet of the same destination, stays in place and Rust rewrites
 * only the per-packet fields; only the fragments and lengths change here.
 */
static void mdw_skb_set_frags(struct sk_buff *skb, const struct mdw_frag *frags,
			      u32 nfrags, u32 payload_len)
{
	struct skb_shared_info *shinfo = skb_shinfo(skb);
	unsigned int i;

	for (i = 0; i < nfrags; i++)
		__skb_fill_page_desc_noacc(shinfo, i, frags[i].page,
					   frags[i].off, frags[i].len);
	shinfo->nr_frags = nfrags;
	skb->data_len = payload_len;
}

/*
 * A new packet skb of @size head bytes, tied to @tie: the call's
 * completion, or the file's keep for an skb a ring keeps.
 */
static struct sk_buff *mdw_skb_alloc(unsigned int size, struct ubuf_info *tie)
{
	struct sk_buff *skb = alloc_skb(size, GFP_KERNEL_ACCOUNT);

	if (unlikely(!skb))
		return NULL;
	skb_shinfo(skb)->flags |= SKBFL_MANAGED_FRAG_REFS;
	net_zcopy_get(tie);
	skb_zcopy_init(skb, tie);
	return skb;
}

/*
 * A new packet of layout @l on @d: @l->hdr_len zeroed header bytes at *@hdr
 * for the caller to fill, the payload attached, tied to the call's @done;
 * with @keep (the file's keep), tied to it instead and with a second
 * reference for the caller's ring.
 */
struct sk_buff *mdw_skb_new(const struct mdw_dev *d, const struct mdw_layout *l,
			    const struct mdw_frag *frags, u32 nfrags,
			    u32 payload_len, struct mdw_done *done,
			    struct ubuf_info *keep, u8 **hdr)
{
	struct net_device *dev = d->dev;
	unsigned int reserve = LL_RESERVED_SPACE(dev) - ETH_HLEN;
	struct sk_buff *skb;

	if (unlikely(nfrags > MAX_SKB_FRAGS || !mdw_layout_ok(l)))
		return NULL;
	skb = mdw_skb_alloc(reserve + MDW_MAX_HEADER, keep ?: &done->ubuf);
	if (unlikely(!skb))
		return NULL;
	skb_reserve(skb, reserve);
	skb_reset_mac_header(skb);
	*hdr = skb_put_zero(skb, l->hdr_len);
	mdw_skb_set_shape(skb, dev, l);
	mdw_skb_set_frags(skb, frags, nfrags, payload_len);
	skb->len += payload_len;
	skb->truesize += payload_len;
	mdw_skb_set_csum(skb, l);
	if (keep)
		skb_get(skb);
	return skb;
}

/*
 * Copies the @payload_len bytes of @frags to @to; with @sum, also their
 * native (csum_partial) sum, computed as they are copied (one pass over
 * the payload, not two). False if the fragments do not add up to
 * @payload_len (then @to holds part of them).
 */
static bool mdw_copy_frags(u8 *to, const struct mdw_frag *frags, u32 nfrags,
			   u32 payload_len, u32 *sum)
{
	__wsum csum = 0;
	u32 i, copied = 0;

	for (i = 0; i < nfrags; i++) {
		u32 len = frags[i].len;
		const u8 *from;

		if (unlikely(len > payload_len - copied))
			return false;
		from = kmap_local_page(frags[i].page);
		if (sum)
			csum = csum_block_add(csum,
					      csum_partial_copy_nocheck(from + frags[i].off,
									to + copied, len),
					      copied);
		else
			memcpy(to + copied, from + frags[i].off, len);
		kunmap_local(from);
		copied += len;
	}
	if (unlikely(copied != payload_len))
		return false;
	if (sum)
		*sum = (__force u32)csum;
	return true;
}

/*
 * mdw_skb_new() for a device without scatter-gather for this packet
 * shape: the payload is copied into the linear part after the header
 * (the caller counts it in bytes_copied), as validate_xmit_skb() would
 * linearize it. Such an skb refers to no page of the call, so it holds
 * the call's completion only with @hold (a paced call completes when its
 * last packet has left); with @keep, a second reference is taken for the
 * caller's ring, which reuses it (mdw_skb_reuse_linear()). With @sum, the
 * payload's native sum is computed as it is copied (mdw_copy_frags()).
 */
struct sk_buff *mdw_skb_new_linear(const struct mdw_dev *d,
				   const struct mdw_layout *l,
				   const struct mdw_frag *frags, u32 nfrags,
				   u32 payload_len, struct mdw_done *done,
				   bool hold, bool keep, u32 *sum, u8 **hdr)
{
	struct net_device *dev = d->dev;
	unsigned int reserve = LL_RESERVED_SPACE(dev) - ETH_HLEN;
	struct sk_buff *skb;

	if (unlikely(nfrags > MAX_SKB_FRAGS || !mdw_layout_ok(l) ||
		     payload_len > SZ_64K))
		return NULL;
	skb = alloc_skb(reserve + l->hdr_len + payload_len +
			dev->needed_tailroom, GFP_KERNEL_ACCOUNT);
	if (unlikely(!skb))
		return NULL;
	skb_reserve(skb, reserve);
	skb_reset_mac_header(skb);
	*hdr = skb_put_zero(skb, l->hdr_len);
	if (unlikely(!mdw_copy_frags(skb_put(skb, payload_len), frags, nfrags,
				     payload_len, sum))) {
		kfree_skb(skb);
		return NULL;
	}
	mdw_skb_set_shape(skb, dev, l);
	mdw_skb_set_csum(skb, l);
	if (hold) {
		net_zcopy_get(&done->ubuf);
		skb_zcopy_init(skb, &done->ubuf);
	}
	if (keep)
		skb_get(skb);
	return skb;
}

/*
 * Whether @skb, a linear copy which only the caller's ring holds, can
 * carry a packet of @payload_len bytes for @r's destination: never tied
 * to a call, unshared (a tap's clone is gone), and as
 * mdw_skb_new_linear() made it: header at the start, room for the
 * payload.
 */
static __always_inline bool mdw_linear_usable(struct sk_buff *skb,
					      const struct net_device *dev,
					      u32 hdr_len, u32 payload_len)
{
	return !skb_cloned(skb) && !skb_zcopy(skb) && !skb_is_nonlinear(skb) &&
	       skb->data == skb_mac_header(skb) && skb_headlen(skb) >= hdr_len &&
	       skb_headroom(skb) >= LL_RESERVED_SPACE(dev) - ETH_HLEN &&
	       skb_end_pointer(skb) - skb->data >=
		       hdr_len + payload_len + dev->needed_tailroom;
}

/* The end of a linear copy's reuse: @skb carries @len bytes for @dev. */
static __always_inline u8 *mdw_linear_rearmed(struct sk_buff *skb,
					      struct net_device *dev, u32 len)
{
	/* Only the ring holds it, so nothing can change the count under us. */
	refcount_set(&skb->users, 2);
	skb->len = len;
	skb_set_tail_pointer(skb, len);
	skb->dev = dev;
	return skb->data;
}

/*
 * mdw_skb_reuse() for a linear copy (mdw_skb_new_linear() without @hold,
 * kept by the caller's ring for @r's destination, busy or not, between
 * calls): when the device has let go of @skb and nothing else shares its
 * head, copies the @payload_len bytes of @frags over the last packet's
 * payload, after its header, which stays in place (*@hdr); with @sum,
 * also the payload's native sum. Same results as mdw_skb_reuse().
 */
int mdw_skb_reuse_linear(struct sk_buff *skb, const struct mdw_rearm *r,
			 const struct mdw_frag *frags, u32 nfrags,
			 u32 payload_len, u32 *sum, u8 **hdr)
{
	struct net_device *dev = r->dev->dev;
	u32 hdr_len = r->layout.hdr_len;

	if (refcount_read(&skb->users) != 1)
		return MDW_SKB_BUSY;
	/* Pairs with the release in the device's skb_unref() (as it does). */
	smp_acquire__after_ctrl_dep();
	if (unlikely(nfrags > MAX_SKB_FRAGS ||
		     !mdw_linear_usable(skb, dev, hdr_len, payload_len) ||
		     !mdw_copy_frags(skb->data + hdr_len, frags, nfrags,
				     payload_len, sum)))
		return MDW_SKB_SPOILED;
	*hdr = mdw_linear_rearmed(skb, dev, hdr_len + payload_len);
	return MDW_SKB_REUSED;
}

/*
 * mdw_skb_reuse_linear() for the usual packet, a payload in one page or
 * across two (@lens as for mdw_skb_rearm()): returns the header bytes,
 * or NULL when the skb is busy or spoiled (the caller then asks
 * mdw_skb_reuse_linear() which).
 */
u8 *mdw_skb_rearm_linear(struct sk_buff *skb, const struct mdw_rearm *r,
			 struct page *page0, struct page *page1, u32 off0,
			 u32 lens, u32 *sum)
{
	struct net_device *dev = r->dev->dev;
	u32 len0 = lens & 0xffff, len1 = lens >> 16;
	u32 hdr_len = r->layout.hdr_len;
	const u8 *from;
	__wsum csum;
	u8 *to;

	if (refcount_read(&skb->users) != 1)
		return NULL;
	smp_acquire__after_ctrl_dep();
	if (unlikely(!mdw_linear_usable(skb, dev, hdr_len, len0 + len1)))
		return NULL;
	to = skb->data + hdr_len;
	from = kmap_local_page(page0);
	if (sum)
		csum = csum_partial_copy_nocheck(from + off0, to, len0);
	else
		memcpy(to, from + off0, len0);
	kunmap_local(from);
	if (len1) {
		from = kmap_local_page(page1);
		if (sum)
			csum = csum_block_add(csum,
					      csum_partial_copy_nocheck(from, to + len0, len1),
					      len0);
		else
			memcpy(to + len0, from, len1);
		kunmap_local(from);
	}
	if (sum)
		*sum = (__force u32)csum;
	return mdw_linear_rearmed(skb, dev, hdr_len + len0 + len1);
}

/*
 * Whether @skb, which the caller's ring alone holds, is as mdw_skb_new()
 * left it for layout @l, tied to the file's @keep: no clone shares its
 * head, nothing replaced its payload (a packet tap's clone copies
 * zero-copy fragments and drops the skb's tie) and its header is where it
 * was. An audited driver does not modify the skbs it is given; this only
 * guards against what the stack around it may do.
 *
 * Only what the call changes is written after it: every skb of a ring
 * has the shape and checksum fields of its destination's layout, and was
 * made for its device with that device's headroom (a destination drops
 * its kept skbs whenever its device's state changes, which is all that
 * changes a layout or the device: Destination::prepare_again).
 */
static __always_inline bool mdw_skb_intact(struct sk_buff *skb,
			   const struct skb_shared_info *shinfo, u32 hdr_len,
			   const struct ubuf_info *keep)
{
	const u8 flags = SKBFL_ZEROCOPY_ENABLE | SKBFL_MANAGED_FRAG_REFS;

	return !skb_cloned(skb) && (shinfo->flags & flags) == flags &&
	       shinfo->destructor_arg == keep && !shinfo->frag_list &&
	       skb_headlen(skb) == hdr_len && skb->data == skb_mac_header(skb);
}

/*
 * Rearms @skb, held by the caller's ring, for a packet of the same
 * destination in the call of @r: MDW_SKB_REUSED with a second reference
 * taken and *@hdr the header of the skb's last packet, in place;
 * MDW_SKB_BUSY while the device still holds it; MDW_SKB_SPOILED when it
 * can no longer be used. Until then its fragments are those of its last
 * packet, whose pages may be unpinned since: managed
 * (SKBFL_MANAGED_FRAG_REFS), they are never read or released, only
 * replaced here; its tie to the file's keep stays (mdw_skb_intact()).
 */
int mdw_skb_reuse(struct sk_buff *skb, const struct mdw_rearm *r,
		  const struct mdw_frag *frags, u32 nfrags, u32 payload_len,
		  u8 **hdr)
{
	struct skb_shared_info *shinfo = skb_shinfo(skb);
	u32 i;

	if (refcount_read(&skb->users) != 1)
		return MDW_SKB_BUSY;
	/* Pairs with the release in the device's skb_unref() (as it does). */
	smp_acquire__after_ctrl_dep();
	if (unlikely(nfrags > MAX_SKB_FRAGS ||
		     !mdw_skb_intact(skb, shinfo, r->layout.hdr_len, r->keep)))
		return MDW_SKB_SPOILED;
	/* Only the ring holds it, so nothing can change the count under us. */
	refcount_set(&skb->users, 2);
	skb->dev = r->dev->dev;
	for (i = 0; i < nfrags; i++)
		__skb_fill_page_desc_noacc(shinfo, i, frags[i].page,
					   frags[i].off, frags[i].len);
	shinfo->nr_frags = nfrags;
	skb->truesize += payload_len - skb->data_len;
	skb->data_len = payload_len;
	skb->len = r->layout.hdr_len + payload_len;
	*hdr = skb->data;
	return MDW_SKB_REUSED;
}

/*
 * mdw_skb_reuse() for the usual packet, a payload in one page or across
 * two: @lens holds the bytes in @page0 from @off0 (low 16 bits) and those
 * from the start of @page1 (high 16 bits, 0 for one fragment); @r the
 * destination's layout, the file's keep and the call's device. Returns the
 * header bytes, or NULL when the skb is busy or spoiled (the caller then
 * asks mdw_skb_reuse() which). The send path calls it once per packet, so
 * it is written out for that case, its arguments in registers.
 */
u8 *mdw_skb_rearm(struct sk_buff *skb, const struct mdw_rearm *r,
		  struct page *page0, struct page *page1, u32 off0, u32 lens)
{
	struct skb_shared_info *shinfo = skb_shinfo(skb);
	u32 len0 = lens & 0xffff, len1 = lens >> 16;
	u32 payload_len = len0 + len1;

	if (refcount_read(&skb->users) != 1)
		return NULL;
	smp_acquire__after_ctrl_dep();
	if (!mdw_skb_intact(skb, shinfo, r->layout.hdr_len, r->keep))
		return NULL;
	/* Only the ring holds it, so nothing can change the count under us. */
	refcount_set(&skb->users, 2);
	skb->dev = r->dev->dev;
	__skb_fill_page_desc_noacc(shinfo, 0, page0, off0, len0);
	if (len1) {
		__skb_fill_page_desc_noacc(shinfo, 1, page1, 0, len1);
		shinfo->nr_frags = 2;
	} else {
		shinfo->nr_frags = 1;
	}
	skb->truesize += payload_len - skb->data_len;
	skb->data_len = payload_len;
	skb->len = r->layout.hdr_len + payload_len;
	return skb->data;
}

/*
 * A ring lets go of @skb, which the device may still hold (the end of a
 * call, or an skb replaced in its ring): an skb tied to the file's @keep
 * is tied to the call's @done instead, so that the call's completion
 * waits for the device to release it and no skb tied to @keep outlives
 * its ring in a device; then the ring's reference is dropped. Nothing but
 * the ring's reference keeps the skb from being freed meanwhile, and the
 * tie is only read when the skb is freed or copied (skb_copy_ubufs()
 * refuses a shared skb); the release in the last skb_unref() orders the
 * new tie before it.
 */
void mdw_skb_let_go(struct sk_buff *skb, struct mdw_done *done,
		    struct ubuf_info *keep)
{
	struct skb_shared_info *shinfo = skb_shinfo(skb);

	if (skb_zcopy(skb) == keep) {
		net_zcopy_get(&done->ubuf);
		WRITE_ONCE(shinfo->destructor_arg, &done->ubuf);
		/* The file holds @keep too: never the last reference. */
		refcount_dec(&keep->refcnt);
	}
	consume_skb(skb);
}

/* Drops a ring's reference (end of a call). */
void mdw_skb_release(struct sk_buff *skb)
{
	consume_skb(skb);
}

void mdw_skb_free(struct sk_buff *skb)
{
	kfree_skb(skb);
}

/*
 * Native (csum_partial) sum of a payload held in page fragments; only used
 * when the device cannot checksum and the destination wants one.
 */
u32 mdw_csum_frags(const struct mdw_frag *frags, u32 nfrags)
{
	__wsum sum = 0;
	int off = 0;
	u32 i;

	for (i = 0; i < nfrags; i++) {
		void *va = kmap_local_page(frags[i].page);

		sum = csum_block_add(sum, csum_partial(va + frags[i].off,
						       frags[i].len, 0), off);
		kunmap_local(va);
		off += frags[i].len;
	}
	return (__force u32)sum;
}

/* --- transmit ----------------------------------------------------------------- */

/*
 * Hands a packet tap a copy of @skb when @skb is shared: skb_clone() of a
 * shared zero-copy skb fails (skb_copy_ubufs() refuses it) and the tap
 * would silently miss the packet. The send path builds fresh skbs while
 * a tap is active, so this only covers a tap that appeared mid-batch.
 */
static void mdw_xmit_nit(struct sk_buff *skb, struct net_device *dev)
{
	struct sk_buff *copy;

	if (likely(!skb_shared(skb) || !skb_zcopy(skb))) {
		dev_queue_xmit_nit(skb, dev);
		return;
	}
	copy = skb_copy(skb, GFP_ATOMIC);
	if (copy) {
		dev_queue_xmit_nit(copy, dev);
		consume_skb(copy);
	}
}

/*
 * Hands skbs[0..n) to the driver of @d under one TX lock, announcing
 * xmit_more for all but the last, like pktgen and AF_PACKET's
 * PACKET_QDISC_BYPASS, on the TX queue of @flow (one queue per open file
 * and device: a flow's packets are never reordered across queues).
 * Inside the BH-disabled section, which dev_close() waits for
 * (synchronize_net()) before ndo_stop, the device is checked to be
 * running with a carrier, and the transmit recursion is counted as the
 * core counts it. Stops early, keeping the rest, when the queue is
 * stopped or the driver says busy (*@why = MDW_TX_STOPPED; a driver that
 * stops its queue rings its doorbell whatever xmit_more said), the device
 * is down (MDW_TX_DOWN) or the recursion limit is reached (MDW_TX_LOOP).
 * Returns the number consumed. skbs[i] with bit i of @watch set is held by
 * the caller's ring too (it stays live): *@held is set if the driver has
 * not let go of it when it returns from it (the end of the call then lets
 * go of it, tied to the call).
 */
unsigned int mdw_xmit_direct(const struct mdw_dev *d, struct sk_buff **skbs,
			     unsigned int n, u32 flow, u64 watch, bool *held,
			     int *why)
{
	return mdw_xmit_run(d->dev, skbs, n, flow, watch, held, why);
}

/*
 * mdw_xmit_direct() on @dev itself (the paced release holds its own refs
 * and watches none).
 */
unsigned int mdw_xmit_run(struct net_device *dev, struct sk_buff **skbs,
			  unsigned int n, u32 flow, u64 watch, bool *held,
			  int *why)
{
	struct netdev_queue *txq;
	unsigned int sent = 0;
	bool nit;
	u16 q;

	*why = MDW_TX_STOPPED;
	local_bh_disable();
	if (unlikely(!netif_running(dev) || !netif_carrier_ok(dev))) {
		*why = MDW_TX_DOWN;
		goto out;
	}
	if (unlikely(dev_xmit_recursion())) {
		*why = MDW_TX_LOOP;
		goto out;
	}
	q = reciprocal_scale(flow, dev->real_num_tx_queues);
	txq = netdev_get_tx_queue(dev, q);
	/*
	 * Packet taps (tcpdump) see mdwrite's packets, unlike
	 * PACKET_QDISC_BYPASS's; one test per batch when there are none.
	 */
	nit = dev_nit_active(dev);
	HARD_TX_LOCK(dev, txq, smp_processor_id());
	dev_xmit_recursion_inc();
	while (sent < n && !netif_xmit_frozen_or_drv_stopped(txq)) {
		struct sk_buff *skb = skbs[sent];
		netdev_tx_t rc;

		skb_set_queue_mapping(skb, q);
		if (nit)
			mdw_xmit_nit(skb, dev);
		rc = netdev_start_xmit(skb, dev, txq, sent + 1 < n);
		if (!dev_xmit_complete(rc))
			break;
		/* Pairs with the release in the driver's skb_unref(). */
		if ((watch & BIT_ULL(sent)) &&
		    refcount_read(&skb->users) != 1)
			*held = true;
		sent++;
	}
	dev_xmit_recursion_dec();
	HARD_TX_UNLOCK(dev, txq);
out:
	local_bh_enable();
	return sent;
}

/*
 * Through the qdisc (MDW_WRITE_QDISC): every skb is consumed. Returns the
 * number the qdisc accepted (the others were dropped) and adds their
 * payload sizes, @lens, to @bytes.
 */
unsigned int mdw_xmit_qdisc(struct sk_buff **skbs, const u32 *lens,
			    unsigned int n, u64 *bytes)
{
	unsigned int i, ok = 0;

	for (i = 0; i < n; i++) {
		u32 len = lens[i];
		/* net_xmit_eval() evaluates its argument twice. */
		int rc = dev_queue_xmit(skbs[i]);

		/* NET_XMIT_CN: queued, other packets were dropped. */
		if (net_xmit_eval(rc) == 0) {
			ok++;
			*bytes += len;
		}
	}
	return ok;
}

/* Now on CLOCK_MONOTONIC or, with @tai, CLOCK_TAI, in nanoseconds. */
u64 mdw_clock_ns(bool tai)
{
	return tai ? ktime_get_clocktai_ns() : ktime_get_ns();
}

/*
 * Gives @skb its departure time for a time-based qdisc: fq reads
 * CLOCK_MONOTONIC times, etf those of its configured clock (CLOCK_TAI).
 */
void mdw_skb_set_departure(struct sk_buff *skb, u64 ns, bool tai)
{
	skb_set_delivery_time(skb, ns_to_ktime(ns),
			      tai ? SKB_CLOCK_TAI : SKB_CLOCK_MONOTONIC);
}

/*
 * Waits a little for a stopped TX queue. Returns false when the device went
 * down (the caller gives up with ENETDOWN).
 */
bool mdw_xmit_wait(const struct mdw_dev *d)
{
	if (!netif_running(d->dev) || !netif_carrier_ok(d->dev))
		return false;
	usleep_range(20, 100);
	return true;
}

bool mdw_signal_pending(void)
{
	return signal_pending(current);
}

bool mdw_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}

void mdw_cond_resched(void)
{
	cond_resched();
}

/* The Rust mirrors of the structs in mdwrite_net.h must match. */
int mdw_ffi_check(size_t info, size_t frag, size_t layout, size_t rearm,
		  size_t caps, size_t max_header)
{
	if (info != sizeof(struct mdw_dev_info) || max_header != MDW_MAX_HEADER ||
	    caps != sizeof(struct mdw_dev_caps) ||
	    frag != sizeof(struct mdw_frag) || layout != sizeof(struct mdw_layout) ||
	    rearm != sizeof(struct mdw_rearm))
		return -EINVAL;
	return 0;
}
