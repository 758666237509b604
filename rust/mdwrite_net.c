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

bool mdw_net_capable_raw(struct net *net)
{
	return ns_capable(net->user_ns, CAP_NET_RAW);
}

/* --- devices --------------------------------------------------------------- */

struct mdw_dev {
	struct net_device *dev;
	netdevice_tracker tracker;
};

struct mdw_dev *mdw_dev_get(struct net *net, int ifindex)
{
	struct mdw_dev *d = kmalloc(sizeof(*d), GFP_KERNEL);

	if (!d)
		return ERR_PTR(-ENOMEM);
	d->dev = netdev_get_by_index(net, ifindex, &d->tracker, GFP_KERNEL);
	if (!d->dev) {
		kfree(d);
		return ERR_PTR(-ENODEV);
	}
	return d;
}

void mdw_dev_put(struct mdw_dev *d)
{
	netdev_put(d->dev, &d->tracker);
	kfree(d);
}

void mdw_dev_info(const struct mdw_dev *d, struct mdw_dev_info *info)
{
	const struct net_device *dev = d->dev;
	netdev_features_t f = dev->features;

	info->ifindex = dev->ifindex;
	info->mtu = dev->mtu;
	info->ethernet = dev->type == ARPHRD_ETHER && dev->addr_len == ETH_ALEN;
	info->up = netif_running(dev) && netif_carrier_ok(dev);
	info->csum_ipv4 = !!(f & (NETIF_F_HW_CSUM | NETIF_F_IP_CSUM));
	info->csum_ipv6 = !!(f & (NETIF_F_HW_CSUM | NETIF_F_IPV6_CSUM));
	info->sg = !!(f & NETIF_F_SG);
	info->skb_sharing = !!(dev->priv_flags & IFF_TX_SKB_SHARING);
	memcpy(info->mac, dev->dev_addr, ETH_ALEN);
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
 * One per MDW_IOC_WRITEV call. Every skb of the call holds a reference on
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
};

/* Asynchronous calls whose completion has not run yet, of every file. */
static atomic_t mdw_async_calls = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(mdw_async_idle);
static struct workqueue_struct *mdw_async_wq;

static void mdw_done_complete(struct sk_buff *skb, struct ubuf_info *uarg,
			      bool zerocopy_success)
{
	struct mdw_done *d = container_of(uarg, struct mdw_done, ubuf);

	if (!refcount_dec_and_test(&uarg->refcnt))
		return;
	if (d->call)
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

	mdw_async_complete(d->call);
	kfree(d);
	if (atomic_dec_and_test(&mdw_async_calls))
		wake_up(&mdw_async_idle);
}

struct mdw_done *mdw_done_new(void)
{
	struct mdw_done *d = kmalloc(sizeof(*d), GFP_KERNEL);

	if (!d)
		return NULL;
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
	return d;
}

/* Drops the call's reference, waits for every skb to be released, frees. */
void mdw_done_wait_free(struct mdw_done *d)
{
	mdw_done_complete(NULL, &d->ubuf, true);
	wait_for_completion(&d->done);
	kfree(d);
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
	mdw_done_complete(NULL, &d->ubuf, true);
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
 * MSG_ZEROCOPY does (nothing with CAP_IPC_LOCK). ERR_PTR(-ENOBUFS) over the
 * limit.
 */
struct mmpin *mdw_memlock_charge(u64 bytes)
{
	struct mmpin *m = kzalloc(sizeof(*m), GFP_KERNEL);
	int err;

	if (!m)
		return ERR_PTR(-ENOMEM);
	err = mm_account_pinned_pages(m, bytes);
	if (err) {
		kfree(m);
		return ERR_PTR(err);
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

/* A new packet skb of @size head bytes, tied to the call's completion. */
static struct sk_buff *mdw_skb_alloc(unsigned int size, struct mdw_done *done)
{
	struct sk_buff *skb = alloc_skb(size, GFP_KERNEL);

	if (unlikely(!skb))
		return NULL;
	skb_shinfo(skb)->flags |= SKBFL_MANAGED_FRAG_REFS;
	net_zcopy_get(&done->ubuf);
	skb_zcopy_init(skb, &done->ubuf);
	return skb;
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
 * A new packet of layout @l on @d: @l->hdr_len zeroed header bytes at *@hdr
 * for the caller to fill, the payload attached. With @keep, a second
 * reference is taken for the caller's ring.
 */
struct sk_buff *mdw_skb_new(const struct mdw_dev *d, const struct mdw_layout *l,
			    const struct mdw_frag *frags, u32 nfrags,
			    u32 payload_len, struct mdw_done *done, bool keep,
			    u8 **hdr)
{
	struct net_device *dev = d->dev;
	unsigned int reserve = LL_RESERVED_SPACE(dev) - ETH_HLEN;
	struct sk_buff *skb;

	if (unlikely(nfrags > MAX_SKB_FRAGS || l->hdr_len > MDW_MAX_HEADER ||
		     l->l4_off >= l->hdr_len || l->l3_off >= l->l4_off))
		return NULL;
	skb = mdw_skb_alloc(reserve + MDW_MAX_HEADER, done);
	if (unlikely(!skb))
		return NULL;
	skb_reserve(skb, reserve);
	skb_reset_mac_header(skb);
	*hdr = skb_put_zero(skb, l->hdr_len);
	skb_set_network_header(skb, l->l3_off);
	skb_set_transport_header(skb, l->l4_off);
	skb->protocol = l->ipv6 ? htons(ETH_P_IPV6) : htons(ETH_P_IP);
	skb->dev = dev;
	mdw_skb_set_frags(skb, frags, nfrags, payload_len);
	skb->len += payload_len;
	skb->truesize += payload_len;
	mdw_skb_set_csum(skb, l);
	if (keep)
		skb_get(skb);
	return skb;
}

/*
 * Whether @skb, which the caller's ring alone holds, is as mdw_skb_new
 * left it for layout @l: no clone shares its head, nothing replaced its
 * payload (a packet tap's clone copies zero-copy fragments and drops the
 * skb's ubuf_info) and its header is where it was. An IFF_TX_SKB_SHARING
 * driver does not modify the skbs it is given; this only guards against
 * what the stack around it may do.
 */
static __always_inline bool mdw_skb_intact(struct sk_buff *skb,
			   const struct skb_shared_info *shinfo, u32 hdr_len,
			   const struct mdw_done *done)
{
	const u8 flags = SKBFL_ZEROCOPY_ENABLE | SKBFL_MANAGED_FRAG_REFS;

	return !skb_cloned(skb) && (shinfo->flags & flags) == flags &&
	       shinfo->destructor_arg == &done->ubuf && !shinfo->frag_list &&
	       skb_headlen(skb) == hdr_len && skb->data == skb_mac_header(skb);
}

/*
 * Rearms @skb, held by the caller's ring, for a packet of the same
 * destination: MDW_SKB_REUSED with a second reference taken and *@hdr the
 * header of the skb's last packet, in place; MDW_SKB_BUSY while the device
 * still holds it; MDW_SKB_SPOILED when it can no longer be used.
 */
int mdw_skb_reuse(struct sk_buff *skb, const struct mdw_layout *l,
		  const struct mdw_frag *frags, u32 nfrags, u32 payload_len,
		  struct mdw_done *done, u8 **hdr)
{
	struct skb_shared_info *shinfo = skb_shinfo(skb);
	u32 i;

	if (refcount_read(&skb->users) != 1)
		return MDW_SKB_BUSY;
	if (unlikely(nfrags > MAX_SKB_FRAGS || !mdw_skb_intact(skb, shinfo, l->hdr_len, done)))
		return MDW_SKB_SPOILED;
	/* Only the ring holds it, so nothing can change the count under us. */
	refcount_set(&skb->users, 2);
	for (i = 0; i < nfrags; i++)
		__skb_fill_page_desc_noacc(shinfo, i, frags[i].page,
					   frags[i].off, frags[i].len);
	shinfo->nr_frags = nfrags;
	skb->truesize += payload_len - skb->data_len;
	skb->data_len = payload_len;
	skb->len = l->hdr_len + payload_len;
	*hdr = skb->data;
	return MDW_SKB_REUSED;
}

/*
 * mdw_skb_reuse() for the usual packet, a payload in one page or across
 * two: @lens holds the bytes in @page0 from @off0 (low 16 bits) and those
 * from the start of @page1 (high 16 bits, 0 for one fragment); @r the
 * destination's header length and the call's completion. Returns the
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

	if (refcount_read(&skb->users) != 1 ||
	    unlikely(!mdw_skb_intact(skb, shinfo, r->hdr_len, r->done)))
		return NULL;
	/* Only the ring holds it, so nothing can change the count under us. */
	refcount_set(&skb->users, 2);
	__skb_fill_page_desc_noacc(shinfo, 0, page0, off0, len0);
	if (len1) {
		__skb_fill_page_desc_noacc(shinfo, 1, page1, 0, len1);
		shinfo->nr_frags = 2;
	} else {
		shinfo->nr_frags = 1;
	}
	skb->truesize += payload_len - skb->data_len;
	skb->data_len = payload_len;
	skb->len = r->hdr_len + payload_len;
	return skb->data;
}

/*
 * End of a call: unties @skb, which only the caller's ring holds and which
 * is as mdw_skb_new() left it for @hdr_len header bytes and @done, from
 * the call (dropping its reference on @done, without completing it: the
 * call holds its own) and from the call's pages, so that its destination
 * can keep it, header in place, for its next call. False, with nothing
 * done, when it cannot be kept.
 */
bool mdw_skb_detach(struct sk_buff *skb, u32 hdr_len, struct mdw_done *done)
{
	struct skb_shared_info *shinfo = skb_shinfo(skb);

	if (refcount_read(&skb->users) != 1 ||
	    !mdw_skb_intact(skb, shinfo, hdr_len, done))
		return false;
	shinfo->nr_frags = 0;
	skb->truesize -= skb->data_len;
	skb->len -= skb->data_len;
	skb->data_len = 0;
	skb->dev = NULL;
	skb_zcopy_clear(skb, true);
	return true;
}

/*
 * Start of a call: ties @skb, kept by a destination of layout @l since its
 * last call (mdw_skb_detach()), to the call of @done on @d, so its ring can
 * rearm it; the checksum mode is this call's (the device's offloads may
 * have changed). False, with nothing done, when it cannot be used there;
 * the caller then releases it.
 */
bool mdw_skb_attach(struct sk_buff *skb, const struct mdw_dev *d,
		    const struct mdw_layout *l, struct mdw_done *done)
{
	struct net_device *dev = d->dev;

	if (refcount_read(&skb->users) != 1 || skb_cloned(skb) || skb_zcopy(skb) ||
	    skb_shinfo(skb)->nr_frags || skb_headlen(skb) != l->hdr_len ||
	    skb->data != skb_mac_header(skb) ||
	    skb_headroom(skb) < LL_RESERVED_SPACE(dev) - ETH_HLEN)
		return false;
	skb_shinfo(skb)->flags |= SKBFL_MANAGED_FRAG_REFS;
	net_zcopy_get(&done->ubuf);
	skb_zcopy_init(skb, &done->ubuf);
	skb->dev = dev;
	mdw_skb_set_csum(skb, l);
	return true;
}

/* Drops a ring's reference (end of a call). */
void mdw_skb_release(struct sk_buff *skb)
{
	consume_skb(skb);
}

/* The payload bytes of a packet skb: its page fragments. */
u32 mdw_skb_payload_len(const struct sk_buff *skb)
{
	return skb->data_len;
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
 * Hands skbs[0..n) to the driver of @d under one TX lock, announcing
 * xmit_more for all but the last, like pktgen and AF_PACKET's
 * PACKET_QDISC_BYPASS. Stops early, keeping the rest, when the queue is
 * stopped or the driver says busy. Returns the number consumed.
 */
unsigned int mdw_xmit_direct(const struct mdw_dev *d, struct sk_buff **skbs,
			     unsigned int n)
{
	struct net_device *dev = d->dev;
	struct netdev_queue *txq;
	unsigned int sent = 0;
	bool nit;
	u16 q;

	local_bh_disable();
	q = smp_processor_id() % dev->real_num_tx_queues;
	txq = netdev_get_tx_queue(dev, q);
	/*
	 * Packet taps (tcpdump) see mdwrite's packets, unlike
	 * PACKET_QDISC_BYPASS's; one test per batch when there are none.
	 */
	nit = dev_nit_active(dev);
	HARD_TX_LOCK(dev, txq, smp_processor_id());
	while (sent < n && !netif_xmit_frozen_or_drv_stopped(txq)) {
		struct sk_buff *skb = skbs[sent];
		netdev_tx_t rc;

		skb_set_queue_mapping(skb, q);
		if (nit)
			dev_queue_xmit_nit(skb, dev);
		rc = netdev_start_xmit(skb, dev, txq, sent + 1 < n);
		if (!dev_xmit_complete(rc))
			break;
		sent++;
	}
	HARD_TX_UNLOCK(dev, txq);
	local_bh_enable();
	return sent;
}

/*
 * Through the qdisc (MDW_WRITE_QDISC): every skb is consumed. Returns the
 * number the qdisc accepted (the others were dropped) and adds their
 * payload sizes to @bytes.
 */
unsigned int mdw_xmit_qdisc(struct sk_buff **skbs, unsigned int n, u64 *bytes)
{
	unsigned int i, ok = 0;

	for (i = 0; i < n; i++) {
		u32 len = mdw_skb_payload_len(skbs[i]);

		if (dev_queue_xmit(skbs[i]) == NET_XMIT_SUCCESS) {
			ok++;
			*bytes += len;
		}
	}
	return ok;
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

/* The Rust mirrors of the structs in mdwrite_net.h must match. */
int mdw_ffi_check(size_t info, size_t frag, size_t layout, size_t rearm,
		  size_t max_header)
{
	if (info != sizeof(struct mdw_dev_info) || max_header != MDW_MAX_HEADER ||
	    frag != sizeof(struct mdw_frag) || layout != sizeof(struct mdw_layout) ||
	    rearm != sizeof(struct mdw_rearm))
		return -EINVAL;
	return 0;
}
