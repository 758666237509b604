// SPDX-License-Identifier: GPL-2.0
/*
 * mdwrite: paced release on the direct path (MDW_WRITE_PACE without
 * MDW_WRITE_QDISC). Rust builds each packet and gives it its departure
 * time; this is what Rust cannot reach in 6.12: an hrtimer and an rbtree
 * of skbs.
 *
 * An open file that sends paced calls has a pacer: its skbs in departure
 * order, released by a soft hrtimer on CLOCK_MONOTONIC. A packet not
 * earlier than the latest queued one (the usual case: a call's rounds
 * rise in time) goes to the tail of a FIFO; any other into an rbtree
 * keyed by time, as in sch_fq. The earlier of the two heads leaves first,
 * the FIFO's on a tie, so each destination's packets keep their order.
 * At each expiry the timer hands the driver, under one TX lock with
 * xmit_more (mdw_xmit_run()), every packet due by now + the slack (module
 * parameter pace_slack_us, default 10): none leaves earlier than its time
 * minus the slack, and the timer may fire up to the slack late to group
 * packets. Packets already due when they are
 * queued leave at once, from the caller. The departure time is not in the
 * skb (skb->tstamp stays 0): the driver sees a packet to send now.
 *
 * Each queued skb holds a reference on its device. A paced call's window
 * ends at most 2 s after the call (MDW_MAX_PACE_AHEAD +
 * MDW_MAX_PACE_WINDOW), which bounds how long. Packets due on a device
 * that went down, or past the transmit recursion limit, are dropped (their
 * call completes); a stopped queue is retried MDW_PACE_RETRY_NS later.
 * Freeing the pacer (the file's release) cancels the timer and drops what
 * is left.
 *
 * With CONFIG_FAULT_INJECTION_DEBUG_FS, /sys/kernel/debug/fail_mdwrite_pace
 * (Documentation/fault-injection) makes a release find the device's queue
 * stopped halfway through a burst, as a busy NIC does: the selftests check
 * that the packets left over still leave, in order.
 */

#include <linux/debugfs.h>
#include <linux/fault-inject.h>
#include <linux/hrtimer.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/rbtree.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include "mdwrite_net.h"

static unsigned int pace_slack_us = 10;
module_param(pace_slack_us, uint, 0644);
MODULE_PARM_DESC(pace_slack_us,
		 "paced release: microseconds a packet may leave early or late to go with others (default 10)");

/* Packets handed to the driver under one TX lock. */
#define MDW_PACE_BURST	32
/* Bursts per expiry before the timer yields to other softirq work. */
#define MDW_PACE_ROUNDS	8
#define MDW_PACE_RETRY_NS (20 * NSEC_PER_USEC)

#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
static DECLARE_FAULT_ATTR(mdw_fail_pace);
static struct dentry *mdw_fail_pace_dir;

void mdw_pace_faults_init(void)
{
	struct dentry *dir = fault_create_debugfs_attr("fail_mdwrite_pace",
						       NULL, &mdw_fail_pace);

	/* Without it the module works the same, only untestable there. */
	mdw_fail_pace_dir = IS_ERR(dir) ? NULL : dir;
}

void mdw_pace_faults_exit(void)
{
	debugfs_remove_recursive(mdw_fail_pace_dir);
}

/* How many of a burst of @n the device takes before "stopping". */
static unsigned int mdw_pace_room(unsigned int n)
{
	return should_fail(&mdw_fail_pace, 1) ? n / 2 : n;
}
#else
void mdw_pace_faults_init(void)
{
}

void mdw_pace_faults_exit(void)
{
}

static unsigned int mdw_pace_room(unsigned int n)
{
	return n;
}
#endif

struct mdw_pacer {
	spinlock_t lock;
	/* Queued skbs in rising departure time, in queueing order. */
	struct sk_buff_head fifo;
	/* The others by departure time; equal times in queueing order. */
	struct rb_root_cached queue;
	/* The tree's latest, where its packets mostly go. */
	struct rb_node *last;
	struct hrtimer timer;
	u32 flow;
	bool dying;
	/* mdw_pacer_drain() is running. */
	bool draining;
};

/*
 * While queued, skb->rbnode (in the tree) overlays skb->dev and next/prev:
 * the device and the departure time wait in skb->cb, which is ours until
 * the driver.
 */
struct mdw_pace_cb {
	struct net_device *dev;
	u64 time;
};

static struct mdw_pace_cb *mdw_pace_cb(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct mdw_pace_cb) > sizeof(skb->cb));
	return (struct mdw_pace_cb *)skb->cb;
}

static u64 mdw_pace_slack(void)
{
	return (u64)READ_ONCE(pace_slack_us) * NSEC_PER_USEC;
}

/* Under p->lock: @skb into the tree, earlier than the FIFO's tail. */
static void mdw_pacer_insert_tree(struct mdw_pacer *p, struct sk_buff *skb)
{
	u64 time = mdw_pace_cb(skb)->time;
	struct rb_node **link, *parent = NULL;
	bool leftmost = true;

	if (p->last && time >= mdw_pace_cb(rb_to_skb(p->last))->time) {
		/* After every queued packet: the usual case. */
		parent = p->last;
		link = &parent->rb_right;
		leftmost = false;
	} else {
		link = &p->queue.rb_root.rb_node;
		while (*link) {
			parent = *link;
			if (time >= mdw_pace_cb(rb_to_skb(parent))->time) {
				link = &parent->rb_right;
				leftmost = false;
			} else {
				link = &parent->rb_left;
			}
		}
	}
	rb_link_node(&skb->rbnode, parent, link);
	rb_insert_color_cached(&skb->rbnode, &p->queue, leftmost);
	if (!p->last || time >= mdw_pace_cb(rb_to_skb(p->last))->time)
		p->last = &skb->rbnode;
}

/*
 * Under p->lock: the earliest queued packet, or NULL; @node is its tree
 * node, NULL when it is the FIFO's head.
 */
static struct sk_buff *mdw_pacer_first(struct mdw_pacer *p,
				       struct rb_node **node)
{
	struct sk_buff *head = skb_peek(&p->fifo);

	*node = rb_first_cached(&p->queue);
	if (*node && (!head || mdw_pace_cb(rb_to_skb(*node))->time <
				       mdw_pace_cb(head)->time))
		return rb_to_skb(*node);
	*node = NULL;
	return head;
}

/* Under p->lock: the timer set for the earliest queued packet, if any. */
static void mdw_pacer_arm(struct mdw_pacer *p, u64 not_before)
{
	struct rb_node *node;
	struct sk_buff *first = mdw_pacer_first(p, &node);
	u64 time;

	if (!first || p->dying)
		return;
	time = max(mdw_pace_cb(first)->time, not_before);
	if (hrtimer_is_queued(&p->timer) &&
	    ktime_to_ns(hrtimer_get_softexpires(&p->timer)) <= time)
		return;
	hrtimer_start_range_ns(&p->timer, ns_to_ktime(time), mdw_pace_slack(),
			       HRTIMER_MODE_ABS_SOFT);
}

/*
 * Under p->lock: takes up to @max queued skbs due by @by, of one device,
 * their departure times in @times. *@more: it stopped at @max or at a
 * packet for another device, not for want of a packet due.
 */
static unsigned int mdw_pacer_take(struct mdw_pacer *p, struct sk_buff **skbs,
				   u64 *times, unsigned int max, u64 by,
				   bool *more)
{
	struct net_device *dev = NULL;
	unsigned int n = 0;

	*more = false;
	if (RB_EMPTY_ROOT(&p->queue.rb_root)) {
		/* The FIFO alone (the usual case): a run off its head. */
		struct sk_buff *head = (struct sk_buff *)&p->fifo;
		struct sk_buff *skb = head->next;

		if (skb != head)
			dev = mdw_pace_cb(skb)->dev;
		while (n < max && skb != head) {
			struct mdw_pace_cb *cb = mdw_pace_cb(skb);
			struct sk_buff *next = skb->next;

			if (cb->time > by)
				break;
			if (cb->dev != dev) {
				*more = true;
				break;
			}
			times[n] = cb->time;
			/* A lone skb, as the driver expects. */
			skb->next = NULL;
			skb->prev = NULL;
			skbs[n++] = skb;
			skb = next;
		}
		if (!n)
			return 0;
		head->next = skb;
		skb->prev = head;
		p->fifo.qlen -= n;
		*more |= n == max;
		return n;
	}
	while (n < max) {
		struct rb_node *node;
		struct sk_buff *skb = mdw_pacer_first(p, &node);
		struct mdw_pace_cb *cb;

		if (!skb)
			break;
		cb = mdw_pace_cb(skb);
		if (cb->time > by)
			break;
		if (dev && cb->dev != dev) {
			*more = true;
			break;
		}
		dev = cb->dev;
		if (node) {
			rb_erase_cached(node, &p->queue);
			if (p->last == node)
				p->last = NULL;
			/* The fields the rbnode overlaid, as a lone skb. */
			skb->next = NULL;
			skb->prev = NULL;
			skb->dev = dev;
		} else {
			__skb_unlink(skb, &p->fifo);
		}
		times[n] = cb->time;
		skbs[n++] = skb;
	}
	*more |= n == max;
	return n;
}

/*
 * Hands the driver every queued packet due by now + the slack, a burst
 * under one TX lock at a time, for up to MDW_PACE_ROUNDS bursts; then sets
 * the timer for what is left. @now is the time (0: not read yet), read
 * again for each later burst. One drainer at a time (p->draining), so that
 * packets leave in departure order: another that finds one running leaves
 * the work to it, and it sets the timer when it stops. With BH disabled.
 */
static void mdw_pacer_drain(struct mdw_pacer *p, u64 now)
{
	struct sk_buff *skbs[MDW_PACE_BURST];
	u64 times[MDW_PACE_BURST];
	bool more = true;
	u64 retry = 0;
	int round;

	spin_lock(&p->lock);
	if (p->draining) {
		spin_unlock(&p->lock);
		return;
	}
	p->draining = true;
	for (round = 0; round < MDW_PACE_ROUNDS && more && !retry; round++) {
		struct net_device *dev;
		unsigned int i, n, sent;
		int why;

		if (round || !now)
			now = ktime_get_ns();
		n = mdw_pacer_take(p, skbs, times, MDW_PACE_BURST,
				   now + mdw_pace_slack(), &more);
		if (!n)
			break;
		spin_unlock(&p->lock);
		dev = skbs[0]->dev;
		/* A queue stopped after the first `room` sets why likewise. */
		sent = mdw_xmit_run(dev, skbs, mdw_pace_room(n), p->flow, 0, NULL,
				    &why);
		if (sent < n && why == MDW_TX_STOPPED) {
			/*
			 * Back at the FIFO's head for a retry, at their own
			 * times (kept here: a driver refusing one may have
			 * written its cb): due no later than anything queued,
			 * they still leave first and in order.
			 */
			spin_lock(&p->lock);
			for (i = n; i-- > sent;) {
				mdw_pace_cb(skbs[i])->dev = dev;
				mdw_pace_cb(skbs[i])->time = times[i];
				__skb_queue_head(&p->fifo, skbs[i]);
			}
			spin_unlock(&p->lock);
			retry = now + MDW_PACE_RETRY_NS;
			n = sent;
		}
		/* Down or looping: dropped, and their call completes. */
		for (i = sent; i < n; i++)
			kfree_skb(skbs[i]);
		for (i = 0; i < n; i++)
			dev_put(dev);
		spin_lock(&p->lock);
	}
	p->draining = false;
	mdw_pacer_arm(p, retry);
	spin_unlock(&p->lock);
}

static enum hrtimer_restart mdw_pacer_fire(struct hrtimer *timer)
{
	mdw_pacer_drain(container_of(timer, struct mdw_pacer, timer), 0);
	return HRTIMER_NORESTART;
}

struct mdw_pacer *mdw_pacer_new(u32 flow)
{
	struct mdw_pacer *p = kzalloc(sizeof(*p), GFP_KERNEL_ACCOUNT);

	if (!p)
		return NULL;
	spin_lock_init(&p->lock);
	__skb_queue_head_init(&p->fifo);
	p->queue = RB_ROOT_CACHED;
	p->flow = flow;
	hrtimer_init(&p->timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS_SOFT);
	p->timer.function = mdw_pacer_fire;
	return p;
}

/*
 * Queues skbs[0..n), all for the device in skbs[0]->dev, on which each
 * takes a reference, skbs[i] to depart at times[i] (CLOCK_MONOTONIC; its
 * skb->tstamp is left as it is, 0 on the direct path). Consumes them all
 * and returns n, or none and returns 0 when the device is not running
 * (the caller reports ENETDOWN).
 */
unsigned int mdw_pacer_enqueue(struct mdw_pacer *p, struct sk_buff **skbs,
			       const u64 *times, unsigned int n)
{
	struct sk_buff *first, *tail;
	struct rb_node *node;
	unsigned int i, appended = 0;
	struct net_device *dev;
	u64 tail_time, now;
	bool due;

	if (!n)
		return 0;
	dev = skbs[0]->dev;
	if (!netif_running(dev))
		return 0;
	spin_lock_bh(&p->lock);
	/*
	 * Each packet not earlier than the FIFO's tail is linked after it,
	 * the queue's head fixed once at the end; any other goes into the
	 * tree.
	 */
	tail = p->fifo.prev;
	tail_time = tail == (struct sk_buff *)&p->fifo ? 0 :
		    mdw_pace_cb(tail)->time;
	for (i = 0; i < n; i++) {
		struct sk_buff *skb = skbs[i];
		struct mdw_pace_cb *cb = mdw_pace_cb(skb);

		dev_hold(dev);
		cb->dev = dev;
		cb->time = times[i];
		if (times[i] >= tail_time) {
			skb->prev = tail;
			tail->next = skb;
			tail = skb;
			tail_time = times[i];
			appended++;
		} else {
			mdw_pacer_insert_tree(p, skb);
		}
	}
	tail->next = (struct sk_buff *)&p->fifo;
	p->fifo.prev = tail;
	p->fifo.qlen += appended;
	first = mdw_pacer_first(p, &node);
	now = ktime_get_ns();
	due = first && mdw_pace_cb(first)->time <= now + mdw_pace_slack();
	if (!due)
		mdw_pacer_arm(p, 0);
	spin_unlock_bh(&p->lock);
	/* Packets already due leave now, not at the timer's next expiry. */
	if (due) {
		local_bh_disable();
		mdw_pacer_drain(p, now);
		local_bh_enable();
	}
	return n;
}

/* Stops the timer and drops every packet still queued; frees @p. */
void mdw_pacer_free(struct mdw_pacer *p)
{
	struct sk_buff *skbs[MDW_PACE_BURST];
	u64 times[MDW_PACE_BURST];
	unsigned int i, n;
	bool more;

	if (!p)
		return;
	spin_lock_bh(&p->lock);
	p->dying = true;
	spin_unlock_bh(&p->lock);
	hrtimer_cancel(&p->timer);
	do {
		spin_lock_bh(&p->lock);
		n = mdw_pacer_take(p, skbs, times, MDW_PACE_BURST, U64_MAX,
				   &more);
		spin_unlock_bh(&p->lock);
		for (i = 0; i < n; i++) {
			struct net_device *dev = skbs[i]->dev;

			kfree_skb(skbs[i]);
			dev_put(dev);
		}
	} while (n);
	kfree(p);
}
